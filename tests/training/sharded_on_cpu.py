"""``truepose.train`` under accelerate's FSDP2 or DeepSpeed on CPU (gloo), for tests/training/test_distributed.py and
``benchmarks/gpu_check_distributed.py --tiny``.

accelerate 1.x turns its FSDP and DeepSpeed plugins on only for GPU-like devices: on CPU it keeps
DistributedType.MULTI_CPU (DDP) and ignores ``ACCELERATE_USE_FSDP``/``ACCELERATE_USE_DEEPSPEED``. This launcher lifts
that one gate: when accelerate built an FSDP or DeepSpeed plugin (from the variables ``accelerate launch`` sets from
a config) on a multi-CPU run, the run is marked FSDP or DeepSpeed, as accelerate marks it on GPUs; every other step
(``fully_shard`` or ``deepspeed.initialize``, the optimizer's shards, checkpoint save and load, the gathered state
dict) is accelerate's own code. DeepSpeed also needs ``DS_ACCELERATOR=cpu``. Run with ``torchrun --nproc_per_node N
sharded_on_cpu.py <truepose train arguments>``.
"""

import sys

import accelerate.state
from accelerate.utils import DistributedType

from truepose.train import main

_accelerator_state_init = accelerate.state.AcceleratorState.__init__


def _sharded_on_cpu(self, *args, fsdp_plugin=None, deepspeed_plugin=None, **kwargs):
    _accelerator_state_init(self, *args, fsdp_plugin=fsdp_plugin, deepspeed_plugin=deepspeed_plugin, **kwargs)
    if self.distributed_type != DistributedType.MULTI_CPU:
        return
    if fsdp_plugin is not None:
        self.distributed_type = DistributedType.FSDP
        self.fsdp_plugin = fsdp_plugin
    elif deepspeed_plugin is not None:  # what AcceleratorState does for DeepSpeed on a GPU
        self.distributed_type = DistributedType.DEEPSPEED
        deepspeed_plugin.set_mixed_precision(self._mixed_precision)
        deepspeed_plugin.select(_from_accelerator_state=True)
        self.deepspeed_plugins = deepspeed_plugin
    accelerate.state.PartialState._shared_state["distributed_type"] = self.distributed_type


accelerate.state.AcceleratorState.__init__ = _sharded_on_cpu

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
