"""Compares the per-rank results of tests/comm/diff_prog.py from two runs, case by case.

    python -m tests.comm.compare DIR_A LABEL_A DIR_B LABEL_B

Values are the canonical JSON diff_prog.py writes. Integers, strings, bytes and types
compare exactly; floats with a tolerance relative to their magnitude that follows the
dtype (float16 and bfloat16 loosest); a case that raised on both sides is equal whatever
the messages say; a case that raised on one side only is a difference.
"""
from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

REL = {"f2": 1e-2, "bfloat16": 1e-2, "f4": 1e-5, "c8": 1e-5}
DEFAULT_REL = 1e-9


@dataclass
class Run:
    """One launch's results: {rank: [(case, value), ...]}, and per rank whether it ended."""
    label: str
    ranks: dict
    done: dict
    meta: dict


def load(folder, label: str) -> Run:
    ranks, done, meta = {}, {}, {}
    for f in sorted(Path(folder).glob(f"{label}-rank*.jsonl")):
        r = int(f.stem.rsplit("rank", 1)[1])
        rows, ended = [], False
        for line in f.read_text().splitlines():
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                break  # a half-written last line of a rank that died
            if "meta" in obj:
                meta[r] = obj["meta"]
            elif "done" in obj:
                ended = True
            else:
                rows.append((obj["case"], obj["value"]))
        ranks[r], done[r] = rows, ended
    return Run(label, ranks, done, meta)


def _tol(kind: str | None) -> float:
    if not kind:
        return DEFAULT_REL
    for k, v in REL.items():
        if k in kind:
            return v
    return DEFAULT_REL


def _num(x):
    if x == "nan":
        return math.nan
    if x == "inf":
        return math.inf
    if x == "-inf":
        return -math.inf
    return x


def _close(a, b, rel) -> bool:
    a, b = _num(a), _num(b)
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, int) and isinstance(b, int):
        return a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        if math.isinf(a) or math.isinf(b):
            return a == b
        return abs(a - b) <= rel * max(1.0, abs(a), abs(b))
    return False


def diff(a, b, rel=DEFAULT_REL, path="") -> str | None:
    """None when a and b are equal (floats within rel), else where and how they differ."""
    if isinstance(a, dict) and "raised" in a or isinstance(b, dict) and "raised" in b:
        ra = isinstance(a, dict) and "raised" in a
        rb = isinstance(b, dict) and "raised" in b
        if ra and rb:
            return None
        return f"{path or 'value'}: one side raised, the other did not"
    if isinstance(a, dict) and isinstance(b, dict) and list(a) == ["dict"] == list(b):
        ma = {json.dumps(k): v for k, v in a["dict"]}
        mb = {json.dumps(k): v for k, v in b["dict"]}
        if ma.keys() != mb.keys():
            return f"{path or 'value'}: keys {sorted(ma)} != {sorted(mb)}"
        for k in ma:
            d = diff(ma[k], mb[k], rel, f"{path}[{k}]")
            if d:
                return d
        return None
    if isinstance(a, dict) and isinstance(b, dict):
        kind = None
        for k in ("ndarray", "torch", "npscalar", "array"):
            if k in a:
                kind = str(a[k]) + str(a.get("dtype", ""))
        rel = _tol(kind) if kind else rel
        if a.keys() != b.keys():
            return f"{path}: keys {sorted(a)} != {sorted(b)}"
        for k in a:
            d = diff(a[k], b[k], rel, f"{path}.{k}" if path else k)
            if d:
                return d
        return None
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{path or 'value'}: length {len(a)} != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            d = diff(x, y, rel, f"{path}[{i}]")
            if d:
                return d
        return None
    if type(_num(a)) in (int, float) and type(_num(b)) in (int, float) \
            and not isinstance(a, bool) and not isinstance(b, bool):
        if type(_num(a)) is not type(_num(b)):
            return f"{path or 'value'}: {a!r} ({type(a).__name__}) != {b!r} ({type(b).__name__})"
        if _close(a, b, rel):
            return None
        return f"{path or 'value'}: {a!r} != {b!r}"
    if a == b and type(a) is type(b):
        return None
    return f"{path or 'value'}: {a!r} != {b!r}"


def short(v, limit=400) -> str:
    s = json.dumps(v)
    return s if len(s) <= limit else s[:limit] + f"... ({len(s)} chars)"


def compare(a: Run, b: Run, ignore=()) -> list[str]:
    """Every difference between runs a and b, one readable line (or block) each."""
    problems = []
    if sorted(a.ranks) != sorted(b.ranks):
        problems.append(f"ranks: {a.label} wrote {sorted(a.ranks)}, {b.label} wrote "
                        f"{sorted(b.ranks)}")
    for r in sorted(set(a.ranks) & set(b.ranks)):
        rows_a, rows_b = a.ranks[r], b.ranks[r]
        vb = dict(rows_b)
        names_b = [n for n, _ in rows_b]
        for name, va in rows_a:
            if any(i in name for i in ignore):
                continue
            if name not in vb:
                if b.done.get(r):
                    problems.append(f"[rank {r}] {name}: missing from {b.label}")
                continue
            d = diff(va, vb[name])
            if d:
                problems.append(f"[rank {r}] {name}: {d}\n    {a.label}: {short(va)}\n"
                                f"    {b.label}: {short(vb[name])}")
        for side in (a, b):
            if not side.done.get(r):
                rows = side.ranks[r]
                last = rows[-1][0] if rows else "(none)"
                other = b if side is a else a
                order = [n for n, _ in other.ranks.get(r, [])]
                nxt = order[len(rows)] if len(rows) < len(order) else "?"
                problems.append(f"[rank {r}] {side.label} did not finish: the last case it "
                                f"recorded is {last!r}; it stopped after that, in that case's "
                                f"closing barrier or in {nxt!r}")
        extra = [n for n in names_b if n not in dict(rows_a)]
        if extra and a.done.get(r):
            problems.append(f"[rank {r}] cases only in {b.label}: {extra[:10]}")
    return problems


def main(argv) -> int:
    a = load(argv[0], argv[1])
    b = load(argv[2], argv[3])
    probs = compare(a, b)
    for p in probs:
        print(p)
    n = sum(len(v) for v in a.ranks.values())
    print(f"{len(probs)} differences over {n} case results", file=sys.stderr)
    return 1 if probs else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
