"""pympi's custom-operation example (its README's "Personalized operations"), run on
Foehn: the only change is the import line. (The README leaves out the standard-library
imports it needs; they are added here.)

    foehn run -n 4 python examples/pair_reduce.py
    mpirun -n 4 python examples/pair_reduce.py

prints R0: 0 .. R3: 3, then R0: 1, R1: None, R2: 5, R3: None.
"""
import itertools
from collections.abc import Callable, Mapping, Set
from dataclasses import dataclass

# pair_reduce.py
from foehn import MPI, proto  # was: from pympi import MPI, proto
comm = MPI.COMM_WORLD
size = comm.size
rank = comm.rank

# Define operation
@dataclass(slots=True, frozen=True)
class PairReduce(proto.OperationContext):
    reducer: Callable

    def group(self, size: int) -> proto.CommunicationGroup:
        src = range(size)
        dst = range(0, size, 2) # half of ranks
        return proto.CommunicationGroup(src, dst)

    def apply(self, src: Mapping[int, int], dst: Set[int]) -> Mapping[int, int]:
        values = [src[rank] for rank in sorted(src)]  # sort values by rank
        result = map(self.reducer, itertools.batched(values, 2))
        return dict(zip(dst, result))

# Inputs
value = rank
print(f"R{rank}: {value}")
# R0: 0
# R1: 1
# R2: 2
# R3: 3

# Execute operation
context = PairReduce(reducer=sum)
group = context.group(size=comm.size)
operation = proto.OperationRequest(group, context, value)
request = comm.submit(operation)
result = request.wait()

# Outputs
print(f"R{rank}: {result}")
# R0: 1
# R1: None
# R2: 5
# R3: None
