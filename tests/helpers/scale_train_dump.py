"""`python -m doctorkit.train` as `accelerate launch --config_file configs/accelerate/<x>.yaml` starts it, on CPUs.

DeepSpeed needs nothing here: with `pip install deepspeed`, accelerate runs its ZeRO-2/3 engine on CPUs (DeepSpeed's
CPU accelerator, gloo). FSDP does: accelerate 1.15 only turns FSDP on for GPU-like devices (AcceleratorState leaves a
CPU run as MULTI_CPU, i.e. plain DDP, even with ACCELERATE_USE_FSDP=true). DOCTORKIT_FORCE_FSDP_ON_CPU=1 makes this
script take accelerate's FSDP path anyway, with the FullyShardedDataParallelPlugin accelerate builds from the launch
config's FSDP_* variables, so the test exercises the config's wrapping, sharding and saving on gloo.
DOCTORKIT_ZERO3_PERSIST_NOTHING=1: ZeRO-3 partitions every weight, however small (see below). Without these two,
training is unchanged.

DOCTORKIT_SCALE_DUMP=DIR makes each rank write DIR/rank<R>.json: the distributed type training ran under, which
engine and ZeRO stage wrapped the model, how many trainable weights were FSDP shards (DTensors) or ZeRO-3 partitions,
and the row identities (token-id sums) of every batch the rank trained on.
"""
import json
import os
import sys
from pathlib import Path

import accelerate.state
from accelerate.utils import DistributedType

DUMP = Path(os.environ["DOCTORKIT_SCALE_DUMP"])
RANK = int(os.environ.get("RANK", "0"))
SEEN = {"batches": []}

if os.environ.get("DOCTORKIT_FORCE_FSDP_ON_CPU") == "1":
    original_init = accelerate.state.AcceleratorState.__init__

    def init_keeping_fsdp_plugin(self, *args, fsdp_plugin=None, **kwargs):
        original_init(self, *args, fsdp_plugin=fsdp_plugin, **kwargs)
        if fsdp_plugin is not None and getattr(self, "fsdp_plugin", None) is None:
            self.fsdp_plugin = fsdp_plugin

    def distributed_type(self):  # a property, because accelerate re-reads PartialState's MULTI_CPU later on
        kind = self.__dict__.get("distributed_type")
        return DistributedType.FSDP if kind == DistributedType.MULTI_CPU and self.__dict__.get("fsdp_plugin") else kind

    def set_distributed_type(self, kind):
        self.__dict__["distributed_type"] = kind

    accelerate.state.AcceleratorState.__init__ = init_keeping_fsdp_plugin
    accelerate.state.AcceleratorState.distributed_type = property(distributed_type, set_distributed_type)

if os.environ.get("DOCTORKIT_ZERO3_PERSIST_NOTHING") == "1":
    # ZeRO-3 leaves each weight under stage3_param_persistence_threshold (DeepSpeed's default, 1e5 elements, as the
    # shipped config leaves it) whole on every rank. builtin:tiny's LoRA weights (2048 elements) are all under it; on
    # Qwen2.5-7B many are over it (recipes/lora.yaml r=16: the MLP's 16 x 18944 = 303k; recipes/qlora.yaml r=64: every
    # one, 64 x 3584 = 229k and up). 0 partitions every weight, so the tiny model meets the path a real one does.
    from accelerate.utils import DeepSpeedPlugin

    original_post_init = DeepSpeedPlugin.__post_init__

    def post_init_persisting_nothing(self):
        original_post_init(self)
        self.deepspeed_config.setdefault("zero_optimization", {})["stage3_param_persistence_threshold"] = 0

    DeepSpeedPlugin.__post_init__ = post_init_persisting_nothing

from doctorkit.stages import sft  # noqa: E402  (after the patch above, before any Accelerator exists)

original_make_trainer = sft.make_trainer


def make_trainer(*args, **kwargs):
    trainer = original_make_trainer(*args, **kwargs)
    trainer_class = type(trainer)
    compute_loss, train = trainer_class.compute_loss, trainer_class.train

    def recording_compute_loss(self, model, inputs, *rest, **kw):
        if model.training:
            ids, mask = inputs["input_ids"], inputs["attention_mask"]
            SEEN["batches"].append([int((row * keep).sum()) for row, keep in zip(ids, mask)])
        return compute_loss(self, model, inputs, *rest, **kw)

    def recording_train(self, *a, **kw):
        result = train(self, *a, **kw)
        from torch.distributed.tensor import DTensor
        trainable = [p for p in self.model_wrapped.parameters() if p.requires_grad]
        engine = self.model_wrapped
        SEEN.update(distributed_type=str(self.accelerator.distributed_type), trainable=len(trainable),
                    sharded=sum(isinstance(p, DTensor) for p in trainable), engine=type(engine).__name__,
                    zero_stage=engine.zero_optimization_stage() if hasattr(engine, "zero_optimization_stage") else None,
                    zero_optimizer=type(getattr(engine, "optimizer", None)).__name__,
                    partitioned=sum(hasattr(p, "ds_id") and not p.ds_persist for p in trainable))
        return result

    trainer_class.compute_loss, trainer_class.train = recording_compute_loss, recording_train
    return trainer


sft.make_trainer = make_trainer
try:
    from doctorkit.train import main

    main(sys.argv[1:])
finally:
    (DUMP / f"rank{RANK}.json").write_text(json.dumps(SEEN))
