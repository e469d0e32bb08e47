"""Where a training step's time goes, per arm of bench.train_speed (issue 20: can packing pay on builtin:tiny?).

    python -m bench.step_profile [--model builtin:tiny] [--steps 24] [--threads 1]
                                 [--variant group_by_length --variant packing --variant packing-batch] [--out X.json]

Each arm runs as bench.train_speed runs it (same data, recipe, trainer; bench/arm.py in a fresh process), with
timers on the pieces of a step: the batch (sampler, dataset rows, collator), the decoder layers forward and
backward with their attention kernel apart, the LM head + cross-entropy forward and backward, gradient clipping,
the optimizer, and the rest (embedding, masks, Trainer and TRL bookkeeping, logging) as the remainder.

Backward pieces are timed with tensor hooks: the gradient of a piece's output arriving starts it, the gradient
of its input being complete ends it. On one thread autograd runs a piece's backward nodes together (they have
neighbouring sequence numbers), so the span is that piece's backward. All spans are CPU seconds of the arm's
process (the machine may be shared). The hooks cost a few microseconds each: the same arm run untimed is printed
next to the profiled one to show it.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

SPANS = defaultdict(float)   # piece -> seconds, summed over the steady part of training (first step on)
STARTS: dict = {}
OPEN: list = []   # backward spans whose end is the end of the backward pass


def _clock() -> float:
    # this process's CPU seconds, not wall: the machine is shared, and other jobs' time would land in any span
    return time.process_time()


def _add(key: str, seconds: float) -> None:
    if STARTS.get("steady") is not None:
        SPANS[key] += seconds


def _backward_span(key: str, output, inputs) -> None:
    """Times the backward of the piece that made `output` from `inputs` (tensors)."""
    import torch

    if not (torch.is_grad_enabled() and torch.is_tensor(output) and output.requires_grad):
        return
    mark = {}
    pending = [t for t in inputs if torch.is_tensor(t) and t.requires_grad]

    def start(grad):
        mark["t"] = _clock()
        if not pending:   # nothing upstream needs a gradient (the first layer, frozen embedding): ends with backward
            OPEN.append((key, mark["t"]))

    def end(grad):
        pending.pop()
        if not pending and "t" in mark:
            _add(key, _clock() - mark["t"])

    output.register_hook(start)
    for t in pending:
        t.register_hook(end)


def _time_module(module, key: str, input_name: str = "hidden_states") -> None:
    def pre(mod, args, kwargs):
        STARTS[id(mod)] = _clock()

    def post(mod, args, kwargs, output):
        _add(f"{key} forward", _clock() - STARTS.pop(id(mod)))
        x = args[0] if args else kwargs.get(input_name)
        out = output[0] if isinstance(output, tuple) else output
        _backward_span(f"{key} backward", out, [x])

    module.register_forward_pre_hook(pre, with_kwargs=True)
    module.register_forward_hook(post, with_kwargs=True)


def _timed_kernel(original):
    def timed(module, query, key, value, *args, **kwargs):
        began = _clock()
        out, weights = original(module, query, key, value, *args, **kwargs)
        _add("attention kernel forward", _clock() - began)
        _backward_span("attention kernel backward", out, [query, key, value])
        return out, weights
    return timed


def _wrap_attention_kernels() -> None:
    """Times the attention function itself (sdpa, eager, the kit's sdpa_by_document) inside each layer's attention."""
    from transformers import AttentionInterface

    from doctorkit import packing

    for name in ("sdpa", "eager"):
        if name in AttentionInterface._global_mapping:
            AttentionInterface._global_mapping[name] = _timed_kernel(AttentionInterface._global_mapping[name])
    packing.sdpa_by_document = _timed_kernel(packing.sdpa_by_document)   # what packing.configure registers


def install() -> None:
    import transformers
    from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

    import doctorkit.loss as dk_loss
    from doctorkit.loss import causal_lm_of

    _wrap_attention_kernels()

    original_ce = dk_loss.chunked_cross_entropy

    def timed_ce(hidden, head, labels, *args, **kwargs):
        began = _clock()
        value = original_ce(hidden, head, labels, *args, **kwargs)
        _add("LM head + loss forward", _clock() - began)
        _backward_span("LM head + loss backward", value, [hidden])
        return value

    dk_loss.chunked_cross_entropy = timed_ce

    original_batches, original_step = transformers.Trainer.get_batch_samples, transformers.Trainer.training_step
    original_clip, original_train = transformers.Trainer._clip_grad_norm, transformers.Trainer.train

    def timed_batches(self, *args, **kwargs):
        began = _clock()
        result = original_batches(self, *args, **kwargs)
        _add("batch (sampler, rows, collator)", _clock() - began)
        return result

    def timed_step(self, model, *args, **kwargs):
        if STARTS.get("steady") is None:
            STARTS["steady"] = _clock()
            lm = causal_lm_of(model)
            for layer in lm.get_decoder().layers:
                _time_module(layer, "decoder layers")
        began = _clock()
        result = original_step(self, model, *args, **kwargs)
        ended = _clock()
        _add("training_step (forward + backward)", ended - began)
        while OPEN:
            key, started = OPEN.pop()
            _add(key, ended - started)
        return result

    def timed_train(self, *args, **kwargs):
        result = original_train(self, *args, **kwargs)
        STARTS["end"] = _clock()
        return result

    def timed_clip(self, *args, **kwargs):
        began = _clock()
        result = original_clip(self, *args, **kwargs)
        _add("grad clipping", _clock() - began)
        return result

    def optimizer_pre(optimizer, args, kwargs):
        STARTS["optimizer"] = _clock()

    def optimizer_post(optimizer, args, kwargs):
        _add("optimizer step", _clock() - STARTS.pop("optimizer"))

    register_optimizer_step_pre_hook(optimizer_pre)
    register_optimizer_step_post_hook(optimizer_post)
    transformers.Trainer.get_batch_samples = timed_batches
    transformers.Trainer.training_step = timed_step
    transformers.Trainer._clip_grad_norm = timed_clip
    transformers.Trainer.train = timed_train


def split(counts: dict) -> dict:
    """Seconds per piece over the steady run, pieces nested in others taken out of them."""
    s = dict(SPANS)
    total = STARTS["end"] - STARTS["steady"]   # CPU seconds from the first step on (the bench's steady part)
    layers_f, layers_b = s.get("decoder layers forward", 0.0), s.get("decoder layers backward", 0.0)
    attn_f, attn_b = s.get("attention kernel forward", 0.0), s.get("attention kernel backward", 0.0)
    head_f, head_b = s.get("LM head + loss forward", 0.0), s.get("LM head + loss backward", 0.0)
    step = s.get("training_step (forward + backward)", 0.0)
    pieces = {
        "attention kernel (fwd+bwd)": attn_f + attn_b,
        "decoder layers without attention kernel (fwd+bwd)": layers_f + layers_b - attn_f - attn_b,
        "LM head + cross-entropy (fwd+bwd)": head_f + head_b,
        "rest of training_step (embedding, masks, loss bookkeeping, autograd)": step - layers_f - layers_b - head_f - head_b,
        "batch (sampler, dataset rows, collator)": s.get("batch (sampler, rows, collator)", 0.0),
        "grad clipping": s.get("grad clipping", 0.0),
        "optimizer step": s.get("optimizer step", 0.0),
    }
    pieces["Trainer loop rest (scheduler, zero_grad, callbacks, logging)"] = total - sum(pieces.values())
    return {"steady_cpu_s": round(total, 4), "steady_wall_s": round(counts["steady_s"], 4), "steps": counts["steps"],
            "ms_per_step": round(1000 * total / counts["steps"], 2),
            "seconds": {k: round(v, 4) for k, v in pieces.items()},
            "share": {k: round(v / total, 4) for k, v in pieces.items()},
            "raw_spans": {k: round(v, 4) for k, v in s.items()}}


def arm_main(spec_path: str, out_path: str) -> int:
    """bench/arm.py's run with the timers above (run in a fresh process by `main`)."""
    from bench import arm

    install()   # arm.main adds its counters and steady-time clock around these
    arm.main([spec_path, out_path])
    counts = json.loads(Path(out_path).read_text(encoding="utf-8"))
    Path(out_path).write_text(json.dumps({**counts, "profile": split(counts)}), encoding="utf-8")
    return 0


def main(argv: list[str] | None = None) -> int:
    from bench import train_speed as ts
    from bench.data import make_conversations, write_jsonl
    from bench.models import model_path

    p = argparse.ArgumentParser(prog="python -m bench.step_profile", description=__doc__.splitlines()[0])
    p.add_argument("--model", default="builtin:tiny")
    p.add_argument("--variant", action="append", choices=sorted(ts.VARIANTS))
    p.add_argument("--steps", type=int, default=24)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out")
    args = p.parse_args(argv)
    variants = args.variant or ["group_by_length", "packing", "packing-batch"]
    bench_args = ts.parse_args(["--threads", str(args.threads)])
    path = model_path(args.model)
    results = []
    with tempfile.TemporaryDirectory(prefix="doctorkit-profile-") as tmp:
        tmp = Path(tmp)
        data = write_jsonl(make_conversations(args.steps * bench_args.batch_size, seed=0), tmp / "mix.jsonl")
        lengths = ts.sample_lengths(path, data, bench_args.max_seq_len)
        rows = max(1, round(bench_args.batch_size * sum(lengths) / len(lengths) / bench_args.max_seq_len))
        recipe = ts.base_recipe(bench_args, path, data)
        for repeat in range(args.repeats):
            for variant in variants:
                spec = ts.arm_spec(bench_args, recipe, "ours", variant, rows)
                (tmp / "spec.json").write_text(json.dumps(spec), encoding="utf-8")
                env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "TQDM_DISABLE": "1",
                       "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
                plain = ts.run_arm(spec, tmp)   # the same arm untimed: what the timers cost
                proc = subprocess.run([sys.executable, "-m", "bench.step_profile", "--arm", str(tmp / "spec.json"),
                                       str(tmp / "out.json")], env=env, cwd=Path(__file__).parent.parent,
                                      capture_output=True, text=True)
                if proc.returncode != 0:
                    raise SystemExit(proc.stderr[-2000:])
                out = json.loads((tmp / "out.json").read_text(encoding="utf-8"))
                prof = out["profile"]
                results.append({"variant": variant, "repeat": repeat, "batch": spec["recipe"]["train"]["batch_size"],
                                "supervised_tokens": out["supervised_tokens"], "positions": out["positions"],
                                "untimed_steady_cpu_s": round(plain["steady_cpu_s"], 4), **prof})
                print(f"\n{variant} (batch {results[-1]['batch']}, {prof['steps']} steps, steady {prof['steady_cpu_s']:.3f} CPU s "
                      f"timed, {plain['steady_cpu_s']:.3f} CPU s untimed, {prof['ms_per_step']:.1f} ms/step)")
                for k, v in prof["seconds"].items():
                    print(f"  {k:<72}{v:>8.3f} s {prof['share'][k]:>7.1%}")
    summary = {}
    for variant in variants:
        runs = [r for r in results if r["variant"] == variant]
        summary[variant] = {"steady_cpu_s": statistics.median(r["steady_cpu_s"] for r in runs),
                            "seconds": {k: round(statistics.median(r["seconds"][k] for r in runs), 4) for k in runs[0]["seconds"]}}
        print(f"\n{variant}: median of {len(runs)}, {summary[variant]['steady_cpu_s']:.3f} CPU s")
        for k, v in summary[variant]["seconds"].items():
            print(f"  {k:<72}{v:>8.3f} s {v / summary[variant]['steady_cpu_s']:>7.1%}")
    if args.out:
        Path(args.out).write_text(json.dumps({
            "command": "python -m bench.step_profile " + " ".join(argv if argv is not None else sys.argv[1:]),
            "load_avg": os.getloadavg(), "summary": summary, "results": results}, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--arm":
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        sys.exit(arm_main(sys.argv[2], sys.argv[3]))
    sys.exit(main())
