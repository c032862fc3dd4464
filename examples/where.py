"""Where am I? Run under any launcher: srun, mpirun, mpiexec, torchrun, or plain python.

    srun -N2 -n4 python examples/where.py
"""
import foehn

job = foehn.job()
print(f"rank {job.rank} of {job.size} on {job.hostname} "
      f"(node {job.node_index} of {job.num_nodes}), launched by {job.launcher}; "
      f"GPUs: {', '.join(job.gpus) or 'none'}")
