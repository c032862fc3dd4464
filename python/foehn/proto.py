"""pympi-compatible custom operations for foehn.MPI: `comm.submit(request)`.

An operation names which ranks contribute (CommunicationGroup.src), which ranks
receive (dst) and what happens in between (an OperationContext's apply, run at the
group's root over every source's object). Every member of the group calls
`comm.submit(OperationRequest(group, ctx, data))` in the same order; `wait()` on the
returned request gives a destination its share (None elsewhere).

    @dataclass(frozen=True, slots=True)
    class PairSum(proto.OperationContext):
        def group(self, size):
            return proto.CommunicationGroup(range(size), range(0, size, 2))
        def apply(self, src, dst):
            values = [src[r] for r in sorted(src)]
            return {d: sum(values[i:i + 2]) for i, d in zip(range(0, len(values), 2), dst)}
"""
from __future__ import annotations

import abc
import bisect
import enum
import functools
import operator
import traceback
import typing
import uuid
from collections import abc as cabc
from dataclasses import dataclass

__all__ = [
    "Rank", "Tag", "RankSet", "CommunicationGroup", "ReduceOperation", "RemoteException",
    "OperationContext", "OperationRequest", "BroadcastContext", "GatherContext",
    "AllGatherContext", "ScatterContext", "AllToAllContext", "ReduceContext",
    "AllReduceContext", "SendRecvContext",
]

Rank = int
Tag = int


class RankSet(cabc.Set):
    """An immutable set of ranks that iterates in ascending order (so that
    `zip(group.dst, results)` pairs the lowest destination with the first result)."""

    __slots__ = ("_ranks",)

    def __init__(self, ranks: cabc.Iterable[int] = ()) -> None:
        ranks = sorted({operator.index(r) for r in ranks})
        object.__setattr__(self, "_ranks", tuple(ranks))

    def __setattr__(self, name, value):
        raise AttributeError("RankSet is immutable")

    def __contains__(self, rank: object) -> bool:
        i = bisect.bisect_left(self._ranks, rank) if isinstance(rank, int) else len(self._ranks)
        return i < len(self._ranks) and self._ranks[i] == rank

    def __iter__(self) -> typing.Iterator[int]:
        return iter(self._ranks)

    def __reversed__(self) -> typing.Iterator[int]:
        return reversed(self._ranks)

    def __len__(self) -> int:
        return len(self._ranks)

    def __getitem__(self, index):
        return self._ranks[index]

    __hash__ = cabc.Set._hash

    def __repr__(self) -> str:
        return f"RankSet({list(self._ranks)})"

    def __reduce__(self):
        return (RankSet, (self._ranks,))


@dataclass(frozen=True)
class CommunicationGroup:
    """Who takes part in an operation: the ranks that send (src) and the ranks that
    receive (dst), each a RankSet. The root (the lowest source, else the lowest
    destination) applies the operation."""

    __slots__ = ("src", "dst")
    src: RankSet
    dst: RankSet

    def __init__(self, src: cabc.Iterable[Rank], dst: cabc.Iterable[Rank]) -> None:
        object.__setattr__(self, "src", RankSet(src))
        object.__setattr__(self, "dst", RankSet(dst))

    def __contains__(self, rank: object) -> bool:
        return rank in self.src or rank in self.dst

    @property
    def root(self) -> Rank:
        if self.src:
            return self.src[0]
        if self.dst:
            return self.dst[0]
        raise ValueError("an empty communication group has no root")

    def __reduce__(self):
        return (CommunicationGroup, (tuple(self.src), tuple(self.dst)))


class ReduceOperation(enum.Enum):
    """Reductions by name (pympi's): usable wherever foehn.MPI takes an op."""
    MAX = enum.auto()
    MIN = enum.auto()
    SUM = enum.auto()
    PROD = enum.auto()
    LAND = enum.auto()
    BAND = enum.auto()
    LOR = enum.auto()
    BOR = enum.auto()
    LXOR = enum.auto()
    BXOR = enum.auto()
    MINLOC = enum.auto()
    MAXLOC = enum.auto()


class RemoteException(RuntimeError):
    """An exception raised at another rank (its traceback as text): what a destination
    gets when the root's apply failed."""

    @classmethod
    def from_exception(cls, exc: BaseException) -> "RemoteException":
        return cls("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))


@dataclass(frozen=True)
class OperationContext(abc.ABC):
    """Base of an operation: subclass it as a frozen dataclass (slots=True works),
    give it a group() for the callers and an apply() that the root runs."""

    __slots__ = ()

    @abc.abstractmethod
    def group(self, *args, **kwargs) -> CommunicationGroup:
        """The operation's communication group."""

    @abc.abstractmethod
    def apply(self, src: cabc.Mapping[Rank, typing.Any],
              dst: cabc.Set[Rank]) -> cabc.Mapping[Rank, typing.Any]:
        """Every source's object (src: rank -> object) to each destination's result."""


@dataclass(frozen=True)
class OperationRequest:
    """One rank's part in an operation: the group, the context (used at the root)
    and this rank's data (used where it is a source)."""

    __slots__ = ("group", "ctx", "data", "id")  # id: a uuid.UUID, not a field
    group: CommunicationGroup
    ctx: typing.Optional[OperationContext]
    data: typing.Any

    def __init__(self, group: CommunicationGroup, ctx: typing.Optional[OperationContext] = None,
                 data: typing.Any = None) -> None:
        object.__setattr__(self, "group", group)
        object.__setattr__(self, "ctx", ctx)
        object.__setattr__(self, "data", data)
        object.__setattr__(self, "id", uuid.uuid4())

    def __reduce__(self):
        return (OperationRequest, (self.group, self.ctx, self.data))


# ---- reductions over objects, in rank order (pympi's semantics) -----------------

def _loc(pick):
    def reduce_loc(items):
        rank, value = functools.reduce(lambda a, b: pick(a, b), items)
        return (value, rank)
    return reduce_loc


def _fold(fn):
    return lambda items: functools.reduce(fn, (v for _, v in items))


def _lxor(a, b):
    return bool(a) != bool(b)


_REDUCERS = {
    ReduceOperation.MAX: lambda items: max(v for _, v in items),
    ReduceOperation.MIN: lambda items: min(v for _, v in items),
    ReduceOperation.SUM: _fold(operator.add),
    ReduceOperation.PROD: _fold(operator.mul),
    ReduceOperation.LAND: lambda items: all(v for _, v in items),
    ReduceOperation.LOR: lambda items: any(v for _, v in items),
    ReduceOperation.LXOR: _fold(_lxor),
    ReduceOperation.BAND: _fold(operator.and_),
    ReduceOperation.BOR: _fold(operator.or_),
    ReduceOperation.BXOR: _fold(operator.xor),
    # (value, rank) of the first rank holding the extreme value
    ReduceOperation.MINLOC: _loc(lambda a, b: b if b[1] < a[1] else a),
    ReduceOperation.MAXLOC: _loc(lambda a, b: b if b[1] > a[1] else a),
}


def reduce_objects(op: ReduceOperation, src: cabc.Mapping[Rank, typing.Any]) -> typing.Any:
    """op over src's values in rank order (MINLOC/MAXLOC give (value, rank))."""
    return _REDUCERS[op](sorted(src.items()))


# ---- pympi's ready-made contexts ------------------------------------------------

def _everyone(size: int) -> CommunicationGroup:
    return CommunicationGroup(range(size), range(size))


@dataclass(frozen=True)
class BroadcastContext(OperationContext):
    """The root's object to every destination."""
    __slots__ = ()

    def group(self, root: int, size: int) -> CommunicationGroup:
        return CommunicationGroup([root], range(size))

    def apply(self, src, dst):
        (value,) = src.values()
        return {d: value for d in dst}


@dataclass(frozen=True)
class AllGatherContext(OperationContext):
    """Every source's object, in rank order, to every destination."""
    __slots__ = ()

    def group(self, size: int) -> CommunicationGroup:
        return _everyone(size)

    def apply(self, src, dst):
        values = [src[r] for r in sorted(src)]
        return {d: list(values) for d in dst}


@dataclass(frozen=True)
class GatherContext(AllGatherContext):
    __slots__ = ()

    def group(self, root: int, size: int) -> CommunicationGroup:  # type: ignore[override]
        return CommunicationGroup(range(size), [root])


@dataclass(frozen=True)
class ScatterContext(OperationContext):
    """The root's sequence, one item per destination in ascending order."""
    __slots__ = ()

    def group(self, root: int, size: int) -> CommunicationGroup:
        return CommunicationGroup([root], range(size))

    def apply(self, src, dst):
        (values,) = src.values()
        return dict(zip(sorted(dst), values))


@dataclass(frozen=True)
class AllToAllContext(OperationContext):
    """Item j of source i's sequence goes to destination j, as item i."""
    __slots__ = ()

    def group(self, size: int) -> CommunicationGroup:
        return _everyone(size)

    def apply(self, src, dst):
        rows = [list(src[r]) for r in sorted(src)]
        return {d: [row[j] for row in rows] for j, d in enumerate(sorted(dst))}


@dataclass(frozen=True)
class AllReduceContext(OperationContext):
    """op over every source's object, to every destination."""
    __slots__ = ("op",)
    op: ReduceOperation

    def __init__(self, op: ReduceOperation = ReduceOperation.SUM) -> None:
        object.__setattr__(self, "op", op)

    def group(self, size: int) -> CommunicationGroup:
        return _everyone(size)

    def apply(self, src, dst):
        result = reduce_objects(self.op, src)
        return {d: result for d in dst}


@dataclass(frozen=True, init=False)
class ReduceContext(AllReduceContext):
    __slots__ = ()

    def group(self, root: int, size: int) -> CommunicationGroup:  # type: ignore[override]
        return CommunicationGroup(range(size), [root])


@dataclass(frozen=True)
class SendRecvContext(OperationContext):
    """One source's object to one destination."""
    __slots__ = ("tag",)
    tag: Tag

    def __init__(self, tag: Tag = 0) -> None:
        object.__setattr__(self, "tag", tag)

    def group(self, src: int, dst: int) -> CommunicationGroup:
        return CommunicationGroup([src], [dst])

    def apply(self, src, dst):
        (value,) = src.values()
        return {d: value for d in dst}
