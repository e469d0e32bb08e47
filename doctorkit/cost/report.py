"""The human-readable estimate: what is being trained, the memory breakdown in GiB, time, money and GPUs."""
from __future__ import annotations

GiB = 1024 ** 3
LABELS = {
    "weights": "base weights", "trainable_params": "trainable parameters", "gradients": "gradients",
    "optimizer_states": "optimizer states", "prefix_kv": "P-tuning prefix K/V", "activations": "activations",
    "backward_transient": "backward transient (largest)", "allocator_slack": "allocator slack",
    "cuda_context": "CUDA context",
}


def _gib(n: float) -> str:
    return f"{n / GiB:8.2f}"


def _device_label(r: dict) -> str:
    return "device total incl. CUDA context" + (" and paged optimizer states" if r["paged_optimizer_bytes"] else "")


def render(r: dict) -> str:
    s = r["shape"]
    lines = [
        f"Cost estimate for {r['recipe']}",
        f"  model   {r['model']}: {r['total_params'] / 1e9:.2f}B params (hidden {s['hidden']}, {s['layers']} layers, "
        f"{s['heads']}/{s['kv_heads']} heads, vocab {s['vocab']})",
        f"  method  {r['method']}: {r['trainable_params'] / 1e6:.2f}M trainable; batch {r['batch_size']} x "
        f"{r['seq_len']} tokens, gradient checkpointing {'on' if r['gradient_checkpointing'] else 'off'}",
        "",
        f"  {'memory (one training step)':<32}{'GiB':>8}",
    ]
    for key, value in r["memory"].items():
        if value:
            lines.append(f"  {LABELS.get(key, key):<32}{_gib(value)}")
    transient = ", ".join(f"{k} {v / GiB:.2f}" for k, v in r["transients"].items())
    lines += [f"  {'peak':<32}{_gib(r['peak_memory_bytes'])}", f"    (backward transient candidates, GiB: {transient})",
              "  the same peak, as measured by:",
              f"    {'tensor peak (comparable to torch.cuda.max_memory_allocated)':<62}{_gib(r['tensor_peak_bytes'])}",
              f"    {'+ allocator slack (comparable to max_memory_reserved)':<62}{_gib(r['reserved_peak_bytes'])}",
              f"    {_device_label(r):<62}{_gib(r['device_peak_bytes'])}"]
    if r["cpu_offloaded_bytes"]:
        lines.append(f"    {'offloaded activations in pinned CPU RAM (not on the GPU)':<62}"
                     f"{_gib(r['cpu_offloaded_bytes'])}")
    lines.append("")
    lines.append(f"  data    {r['schedule']}: {r['tokens']:,} tokens to train "
                 f"({r['tokens_per_epoch']:,} per epoch), {r['flops']:.3g} FLOPs")
    if r["gpu"]:
        lines.append(f"  on {r['gpu']}: {r['hours']:.3g} h x ${r['usd_per_hour']:.2f}/h = ${r['usd']:.2f}; "
                     f"largest batch that fits: {r['max_batch_size']}" + ("" if r["fits"] else "  ** DOES NOT FIT **"))
    else:
        lines.append("  fits on NO GPU of the catalog")
    lines += ["", f"  {'GPU':<15}{'memory':>8}{'fits':>6}{'max batch':>11}{'hours':>9}{'$/h':>7}{'USD':>10}"]
    for g in r["gpus"]:
        mark = "yes" if g["fits"] else "no"
        cost = f"{g['hours']:9.3g}{g['usd_per_hour']:7.2f}{g['usd']:10.2f}" if g["fits"] else f"{'-':>9}{'-':>7}{'-':>10}"
        lines.append(f"  {g['label']:<15}{g['memory_bytes'] / GiB:8.1f}{mark:>6}{g['max_batch_size']:>11}{cost}")
    if r["advice"]:
        lines += ["", "  does not fit; what would make it fit (peak after the change):"]
        lines += [f"    - {a}" for a in r["advice"]]
    lines += ["", "  assumptions:"] + [f"    - {a}" for a in r["assumptions"]]
    return "\n".join(lines)
