"""Hostlist expansion and compression: Foehn's C parser against python-hostlist
(the module Slurm users script with), side by side in one run.

    .venv/bin/python bench/hostlists.py [--out bench/results]

Writes hostlist.json and hostlist.md (a table with the ratios) into --out.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import hostlist  # python-hostlist

import foehn

CASES = {
    "4 nodes": "n[001-004]",
    "1,024 nodes, 3 groups": "gpu[0001-0512],cpu[001-256]-ib,mem[1-256]",
    "4,096 nodes, 2-D": "r[00-63]n[00-63]",
    "65,536 nodes": "nid[000000-065535]",
}


def best_of(fn, arg, repeat: int) -> float:
    """Fastest of `repeat` runs, in seconds (the least disturbed by the machine)."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(arg)
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="bench/results")
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args()

    rows = []
    for name, expr in CASES.items():
        hosts = foehn.hostlist_expand(expr)
        assert hosts == hostlist.expand_hostlist(expr, sort=False), name
        assert foehn.hostlist_expand(foehn.hostlist_compress(hosts)) == hosts
        ours_x = best_of(foehn.hostlist_expand, expr, args.repeat)
        peer_x = best_of(lambda e: hostlist.expand_hostlist(e, sort=False), expr, args.repeat)
        ours_c = best_of(foehn.hostlist_compress, hosts, args.repeat)
        peer_c = best_of(lambda h: hostlist.collect_hostlist(h), hosts, args.repeat)
        rows.append({"case": name, "hosts": len(hosts),
                     "expand_foehn_s": ours_x, "expand_python_hostlist_s": peer_x,
                     "expand_ratio": peer_x / ours_x,
                     "compress_foehn_s": ours_c, "compress_python_hostlist_s": peer_c,
                     "compress_ratio": peer_c / ours_c})

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"python": platform.python_version(), "machine": platform.machine(),
            "python_hostlist": getattr(hostlist, "__version__", "?"), "repeat": args.repeat}
    (out / "hostlist.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    lines = ["| case | hosts | expand: foehn | python-hostlist | ratio | compress: foehn | "
             "python-hostlist | ratio |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['case']} | {r['hosts']:,} | {r['expand_foehn_s'] * 1e6:,.0f} µs | "
                     f"{r['expand_python_hostlist_s'] * 1e6:,.0f} µs | "
                     f"{r['expand_ratio']:.1f}× | {r['compress_foehn_s'] * 1e6:,.0f} µs | "
                     f"{r['compress_python_hostlist_s'] * 1e6:,.0f} µs | "
                     f"{r['compress_ratio']:.1f}× |")
    geo = statistics.geometric_mean([r["expand_ratio"] for r in rows])
    lines.append(f"\nGeometric mean expansion speed-up: {geo:.1f}× "
                 f"(best of {args.repeat}, Python {meta['python']}).")
    table = "\n".join(lines)
    (out / "hostlist.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
