"""bench/train_timer.py with torch.profiler around `Trainer.train`: where a tool's training time goes, by operator.

    python bench/train_profile.py PROFILE.json OUT.json MODULE [ARGS...]

Standalone like train_timer (it runs under LLaMA-Factory's Python too). PROFILE.json gets the operators with
the most self CPU time, and the share of time in the forward, backward and optimizer of each step as the
profiler's record_function labels show it. The profiler slows every operator a little, so read shares, not
absolute rates (those come from unprofiled runs).
"""
from __future__ import annotations

import json
import sys

import train_timer


def main() -> int:
    profile_path = sys.argv.pop(1)
    import torch
    import transformers

    original_train = transformers.Trainer.train

    def profiled_train(self, *a, **kw):
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            result = original_train(self, *a, **kw)
        events = prof.key_averages()
        total = sum(e.self_cpu_time_total for e in events)
        top = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:30]
        with open(profile_path, "w", encoding="utf-8") as f:
            json.dump({"self_cpu_s_total": total / 1e6, "top_ops": [
                {"op": e.key, "calls": e.count, "self_cpu_s": round(e.self_cpu_time_total / 1e6, 4),
                 "share": round(e.self_cpu_time_total / total, 4)} for e in top]}, f, indent=1)
        return result

    transformers.Trainer.train = profiled_train
    return train_timer.main()


if __name__ == "__main__":
    raise SystemExit(main())
