"""Runs a training command and records what its transformers Trainer did, the same way for any tool.

    python bench/train_timer.py OUT.json MODULE [ARGS...]     # e.g. doctorkit.train recipe.yaml

Standalone on purpose (standard library + transformers only): bench/vs_llamafactory.py runs it with
DoctorKit's interpreter and with LLaMA-Factory's, whose virtual environment has no doctorkit. It wraps
`transformers.Trainer.train` (wall and process CPU seconds of the call) and `Trainer.training_step` (steps,
positions and supervised tokens of every batch), then runs MODULE as `python -m MODULE ARGS`.
"""
from __future__ import annotations

import json
import resource
import runpy
import sys
import time


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # every thread of this process
    return usage.ru_utime + usage.ru_stime


def main() -> int:
    out_path, module, args = sys.argv[1], sys.argv[2], sys.argv[3:]
    import transformers

    record = {"steps": 0, "positions": 0, "supervised_tokens": 0, "train_wall_s": None, "train_cpu_s": None}
    original_train, original_step = transformers.Trainer.train, transformers.Trainer.training_step

    def timed_train(self, *a, **kw):
        started, cpu_started = time.perf_counter(), cpu_seconds()
        result = original_train(self, *a, **kw)
        record["train_wall_s"] = time.perf_counter() - started
        record["train_cpu_s"] = cpu_seconds() - cpu_started
        return result

    def counted_step(self, model, inputs, *a, **kw):
        record["steps"] += 1
        record["positions"] += int(inputs["input_ids"].numel())
        record["supervised_tokens"] += int((inputs["labels"] != -100).sum())
        return original_step(self, model, inputs, *a, **kw)

    transformers.Trainer.train, transformers.Trainer.training_step = timed_train, counted_step
    sys.argv = [module, *args]
    code = 0
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    record["exit_code"] = code
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(record, f)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
