"""One rank of the whole-job benchmark: a finished init_process_group, then out."""
import torch.distributed as dist

import foehn.pytorch

foehn.pytorch.init_process_group(backend="gloo")
dist.barrier()
dist.destroy_process_group()
