"""Cost estimator: public measurements reproduced within +-20%, JSON consistency, and clear bad-input errors."""
from __future__ import annotations

import json

import pytest

from doctorkit.cost import main, run
from doctorkit.cost.catalog import GPUS, find_gpu
from doctorkit.cost.job import Job, Stack
from doctorkit.cost.memory import breakdown, peak_bytes, trainable_params, weight_bytes
from doctorkit.cost.shapes import KNOWN, resolve_shape
from doctorkit.errors import DoctorKitError

GiB = 1024 ** 3
QUICK = "recipes/quickstart.yaml"
# torchtune: bf16 weights and adapters (no fp32 upcast), torchao NF4 (its linear keeps no input for backward),
# compiled chunked cross-entropy that keeps only the bf16 logits, peak read from PyTorch's allocator (no CUDA context)
TORCHTUNE = Stack(adapter_bytes=2, kbit_upcast=False, quantized_saves_input=False, loss_head="bf16_logits",
                  cuda_context_bytes=0)


def estimate_json(capsys, *argv) -> dict:
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def torchtune_llama31_8b(bits: int) -> Job:
    return Job(shape=KNOWN["llama-3.1-8b"], method="qlora" if bits == 4 else "lora", weight_bits=bits, act_bytes=2,
               batch=2, seq=2048, checkpointing=True, attention="sdpa", lora_r=8,
               lora_targets=("q", "v", "o", "gate", "up", "down"), stack=TORCHTUNE)


@pytest.mark.parametrize("bits, measured_gib", [(4, 7.4), (16, 16.2)])
def test_torchtune_llama31_8b_on_rtx4090(bits, measured_gib):
    """torchtune README, 'Memory and training speed': Llama-3.1-8B on one RTX 4090, batch 2, packed seq 2048:
    QLoRA 7.4 GiB, LoRA 16.2 GiB peak. Their single-device configs: activation checkpointing on, bf16 everywhere,
    LoRA rank 8 on q_proj, v_proj, output_proj and the MLP, NF4 with double-quantized scales, torch.compile'd
    chunked cross-entropy; the figure is PyTorch allocator memory, so the CUDA context is not in it."""
    estimate = peak_bytes(torchtune_llama31_8b(bits)) / GiB
    assert estimate == pytest.approx(measured_gib, rel=0.20)


def test_chatglm_6b_ptuning_v2_int4():
    """ChatGLM-6B's P-tuning v2 README: INT4 base, batch 1 (x16 accumulation), pre_seq_len 128, source 64 + target
    128 tokens, 'as little as 6.7 GB' (about 7 GB). Assumptions: the ChatGLM-6B shape it was measured on (MHA,
    130k vocab; a ChatGLM3-6B shape needs less: GQA prefixes, 65k vocab), its own INT4 kernels keep embeddings
    and lm_head in fp16, eager attention, full fp32 logits for the loss, gradient checkpointing on (issue 3),
    prefix parameters in fp32, GPU memory as nvidia-smi shows it (CUDA context included)."""
    stack = Stack(kbit_upcast=False, loss_head="full")
    job = Job(shape=KNOWN["chatglm-6b"], method="ptuning", weight_bits=4, act_bytes=2, batch=1, seq=64 + 128,
              checkpointing=True, attention="eager", pre_seq_len=128, stack=stack)
    assert peak_bytes(job) == pytest.approx(7e9, rel=0.20)
    assert trainable_params(job) == 28 * 2 * 128 * 4096       # layers x K,V x pre_seq_len x kv heads x head dim
    glm3 = Job(**{**job.__dict__, "shape": KNOWN["chatglm3-6b"]})
    assert trainable_params(glm3) == 28 * 2 * 128 * 2 * 128 and peak_bytes(glm3) < peak_bytes(job)


def test_lora_and_shape_counts_match_the_real_tiny_model(tmp_path):
    from peft import LoraConfig, get_peft_model
    from doctorkit.builtin.tiny import build_tiny
    model, tokenizer = build_tiny()
    shape, _ = resolve_shape("builtin:tiny")
    assert shape.total_params == sum(p.numel() for p in model.parameters())
    model.config.save_pretrained(tmp_path)              # a local folder's config.json gives the same shape
    assert resolve_shape(str(tmp_path))[0].hidden == shape.hidden == 64
    peft_model = get_peft_model(model, LoraConfig(r=16, target_modules="all-linear", task_type="CAUSAL_LM"))
    job = Job(shape=shape, method="lora", weight_bits=16, act_bytes=2, batch=1, seq=8, checkpointing=False,
              attention="sdpa", lora_r=16)
    assert trainable_params(job) == sum(p.numel() for p in peft_model.parameters() if p.requires_grad)


def test_memory_terms_move_the_right_way():
    base = Job(shape=KNOWN["qwen2.5-7b"], method="lora", weight_bits=16, act_bytes=2, batch=4, seq=2048,
               checkpointing=False, attention="sdpa")
    change = lambda **kw: Job(**{**base.__dict__, **kw})  # noqa: E731
    acts = lambda job: breakdown(job)[0]["activations"]  # noqa: E731
    assert acts(change(checkpointing=True)) < acts(base) / 10
    assert acts(change(attention="eager")) > acts(base)               # eager keeps seq x seq scores
    flash = change(attention="flash_attention_2")   # linear in seq; SDPA adds its [seq x seq] float mask per layer
    assert acts(change(seq=4096, attention="flash_attention_2")) == pytest.approx(2 * acts(flash), rel=0.01)
    assert acts(change(seq=4096)) - 2 * acts(base) == pytest.approx(28 * 2 * 4 * (4096 ** 2 - 2 * 2048 ** 2))
    linear = 28 * KNOWN["qwen2.5-7b"].layer_linear_params
    saved_bits = 8 * (weight_bytes(change(weight_bits=4, double_quant=False)) - weight_bytes(change(weight_bits=4))) / linear
    assert 0.3 < saved_bits < 0.45                                     # double quant saves ~0.37 bit per weight
    assert breakdown(change(optimizer="paged_adamw_8bit"))[0]["optimizer_states"] == pytest.approx(
        breakdown(base)[0]["optimizer_states"] / 4)


def test_json_is_complete_and_consistent(capsys):
    r = estimate_json(capsys, QUICK, "--gpu", "a100-80gb", "--price-per-hour", "2.5")
    for key in ("memory", "peak_memory_bytes", "tokens", "flops", "hours", "usd", "assumptions", "max_batch_size"):
        assert key in r
    assert sum(r["memory"].values()) == pytest.approx(r["peak_memory_bytes"], abs=16)
    gpu = find_gpu("a100-80gb")
    assert r["hours"] == pytest.approx(r["flops"] / (gpu.peak_tflops * 1e12 * r["efficiency"]) / 3600)
    assert r["usd"] == pytest.approx(r["hours"] * 2.5) and r["usd_per_hour"] == 2.5
    assert r["flops"] == pytest.approx(r["flops_per_token"] * r["tokens"])
    assert any("tokenizer" in a for a in r["assumptions"]) and any("default" in a for a in r["assumptions"])


def test_max_batch_is_the_edge_of_fitting(capsys):
    argv = [QUICK, "--set", "model=qwen2.5-7b", "--set", "method=qlora", "--set", "data.packing=true",
            "--set", "train.max_seq_len=2048", "--gpu", "rtx4090"]
    b = estimate_json(capsys, *argv)["max_batch_size"]
    at = lambda n: estimate_json(capsys, *argv, "--set", f"train.batch_size={n}")  # noqa: E731
    assert b >= 1 and at(b)["fits"] and not at(b + 1)["fits"]
    assert at(b + 1)["peak_memory_bytes"] > find_gpu("rtx4090").memory_bytes


def test_samples_scale_tokens_and_money(capsys):
    argv = [QUICK, "--set", "train.max_steps=-1", "--gpu", "l4"]
    small, big = estimate_json(capsys, *argv, "--samples", "1000"), estimate_json(capsys, *argv, "--samples", "3000")
    assert big["tokens"] == pytest.approx(3 * small["tokens"], rel=0.01)
    assert big["usd"] == pytest.approx(3 * small["usd"], rel=0.01)
    given = estimate_json(capsys, *argv, "--samples", "100", "--tokens-per-sample", "200")
    assert given["tokens"] == 100 * 200


def test_efficiency_is_calibrated_from_measured_runs(capsys, tmp_path):
    (tmp_path / "run1.json").write_text(json.dumps({"gpu": "h100-80gb", "model": "qwen2.5-7b", "method": "lora",
                                                    "seq_len": 1024, "batch": 4, "tokens_per_s": 9000, "mfu": 0.5}))
    (tmp_path / "none").mkdir()   # an empty results folder: nothing to calibrate from (a missing one is an error)
    default = estimate_json(capsys, QUICK, "--gpu", "h100-80gb", "--results", str(tmp_path / "none"))
    measured = estimate_json(capsys, QUICK, "--gpu", "h100-80gb", "--results", str(tmp_path))
    assert default["efficiency"] == 0.35 and measured["efficiency"] == 0.5
    assert measured["hours"] == pytest.approx(default["hours"] * 0.35 / 0.5)
    assert any("measured lora run" in a for a in measured["assumptions"])


def test_calibration_contract_device_names_baseline_arms_and_hours(capsys, tmp_path):
    """A bench record names its GPU as torch.cuda.get_device_name() does; only our arm calibrates; the estimate's
    hours for that GPU scale by default MFU / measured MFU (both against the catalog peak)."""
    records = [{"gpu": "NVIDIA H100 80GB HBM3", "method": "lora", "arm": "ours", "mfu": 0.5},
               {"gpu": "NVIDIA H100 80GB HBM3", "method": "lora", "arm": "baseline", "mfu": 0.05},
               {"gpu": "cpu", "method": "lora", "arm": "ours", "mfu": 0.9},
               {"gpu": "NVIDIA L40S", "method": "lora", "arm": "ours", "mfu": 0.9}]   # no catalog peak: skipped
    (tmp_path / "gpu-run.json").write_text(json.dumps({"results": records}), encoding="utf-8")
    (tmp_path / "none").mkdir()   # an empty results folder: the default efficiency (a missing one is an error)
    default = estimate_json(capsys, QUICK, "--gpu", "h100-80gb", "--results", str(tmp_path / "none"))
    measured = estimate_json(capsys, QUICK, "--gpu", "h100-80gb", "--results", str(tmp_path))
    assert default["efficiency"] == 0.35 and measured["efficiency"] == 0.5      # median of [0.5], baseline left out
    assert measured["hours"] == pytest.approx(default["hours"] * 0.35 / 0.5)
    from doctorkit.cost.speed import mfu
    h100 = find_gpu("h100-80gb")   # the one MFU definition reproduces the record's hours
    assert mfu(measured["flops"] / (measured["hours"] * 3600), h100) == pytest.approx(0.5)


def test_table_without_gpu_marks_fitting_gpus(capsys):
    assert main([QUICK, "--set", "model=llama-3.1-8b", "--set", "train.max_seq_len=1024"]) == 0
    out = capsys.readouterr().out
    for gpu in GPUS:
        assert gpu.label in out
    assert "T4 16GB" in out and " no " in out and " yes " in out and "GiB" in out


def test_recipe_that_fits_no_gpu_says_what_would(capsys):
    argv = [QUICK, "--set", "model=Qwen/Qwen2.5-72B-Instruct", "--set", "train.batch_size=8",
            "--set", "train.max_seq_len=4096", "--set", "data.packing=true"]
    r = estimate_json(capsys, *argv)
    assert r["gpu"] is None and not r["fits"] and r["hours"] is None
    assert any("qlora" in a for a in r["advice"]) and any("gradient_checkpointing" in a for a in r["advice"])
    assert main(argv) == 0
    assert "fits on NO GPU" in capsys.readouterr().out
    on_t4 = estimate_json(capsys, QUICK, "--set", "model=qwen2.5-7b", "--gpu", "t4")
    assert not on_t4["fits"] and any("qlora" in a and "(fits)" in a for a in on_t4["advice"])


@pytest.mark.parametrize("argv, words", [
    (["--gpu", "v100"], ["unknown GPU", "rtx4090", "h100-80gb"]),
    (["--set", "model=some-org/unknown-9b"], ["no local config.json", "qwen2.5-7b", "chatglm3-6b"]),
    (["--price-per-hour", "1"], ["--gpu"]),
    (["--set", "lora.target_modules=[c_fc]"], ["c_fc", "all-linear"]),
])
def test_bad_input_is_one_line(capsys, argv, words):
    with pytest.raises(SystemExit) as exit_info:
        run([QUICK, *argv])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and all(w in err for w in words)


def test_known_names_resolve():
    assert resolve_shape("meta-llama/Meta-Llama-3.1-8B-Instruct")[0].name == "llama-3.1-8b"
    assert resolve_shape("THUDM/chatglm3-6b")[0].kv_heads == 2
    assert resolve_shape("Qwen/Qwen3-32B")[0].q_dim == 64 * 128
    with pytest.raises(DoctorKitError):
        find_gpu("a900")


def test_tokens_come_from_the_data(capsys, tmp_path):
    from doctorkit.data import prepare
    from doctorkit.recipe import load_recipe
    from doctorkit.builtin.tiny import build_tokenizer
    packed = ["--set", "data.packing=true", "--set", "train.max_steps=-1"]
    r = estimate_json(capsys, QUICK, *packed)
    exact = prepare(load_recipe(QUICK, packed[1::2]), build_tokenizer()).report.lengths
    assert r["tokens_per_epoch"] == sum(exact) and r["samples"] == len(exact)
    # no tokenizer offline: characters / ratio + template tokens per message
    rows = [{"messages": [{"role": "user", "content": "头" * 70}, {"role": "assistant", "content": "痛" * 70}]}] * 4
    data = tmp_path / "d.jsonl"
    data.write_text("\n".join(json.dumps(x, ensure_ascii=False) for x in rows), encoding="utf-8")
    r = estimate_json(capsys, QUICK, *packed, "--set", "model=qwen2.5-0.5b", "--set", f"data.path={data}",
                      "--set", "data.val_ratio=0")
    assert r["tokens_per_epoch"] == 4 * (100 + 2 * 5)
    assert any("1.4 Chinese characters" in a for a in r["assumptions"])


def test_auto_batch_keeps_the_effective_batch_and_is_the_largest_that_fits(capsys):
    argv = [QUICK, "--set", "model=qwen2.5-7b", "--set", "method=qlora", "--set", "data.packing=true",
            "--set", "train.max_seq_len=2048", "--set", "train.batch_size=4", "--set", "train.grad_accum=24",
            "--gpu", "rtx4090"]
    r = estimate_json(capsys, *argv, "--auto-batch")
    micro, accum = r["batch_size"], r["gpus"][[g["gpu"] for g in r["gpus"]].index("rtx4090")]["auto_grad_accum"]
    assert micro * accum == 96 and r["fits"]
    larger = [b for b in range(micro + 1, 97) if 96 % b == 0]
    at = lambda n: estimate_json(capsys, *argv, "--set", f"train.batch_size={n}")  # noqa: E731
    assert larger and not at(larger[0])["fits"]      # the next micro-batch that keeps 96 does not fit
    assert any("--auto-batch" in a for a in r["assumptions"])


LLAMA_QLORA = ["recipes/qlora.yaml", "--set", "model=meta-llama/Llama-3.1-8B-Instruct",
               "--set", "train.max_seq_len=2048", "--set", "data.packing=true", "--set", "train.batch_size=2",
               "--set", "gradient_checkpointing=true",
               "--gpu", "rtx4090", "--tokens-per-sample", "500"]


def test_peak_is_shown_as_allocated_reserved_and_device_total(capsys):
    """The same peak as torch.cuda.max_memory_allocated, max_memory_reserved and nvidia-smi would show it: paged
    8-bit optimizer states (bitsandbytes' CUDA managed memory, only for parameters of >= 1e5 elements) and the CUDA
    context are outside PyTorch's allocator."""
    r = estimate_json(capsys, *LLAMA_QLORA, "--set", "lora.r=64")
    m = r["memory"]
    # r=64 on all linears of Llama-3.1-8B: only k_proj's and v_proj's B (1024 x 64 = 65536 elements) are not paged
    assert r["paged_optimizer_bytes"] == (r["trainable_params"] - 32 * 2 * 1024 * 64) * 2
    assert r["device_peak_bytes"] == pytest.approx(r["peak_memory_bytes"], abs=2)
    assert r["reserved_peak_bytes"] == pytest.approx(
        r["peak_memory_bytes"] - m["cuda_context"] - r["paged_optimizer_bytes"], abs=4)
    assert r["tensor_peak_bytes"] == pytest.approx(r["reserved_peak_bytes"] - m["allocator_slack"], abs=4)
    small = estimate_json(capsys, *LLAMA_QLORA, "--set", "lora.r=4", "--set", "lora.target_modules=[q_proj,v_proj]")
    assert small["paged_optimizer_bytes"] == 0         # r x 4096 = 16384 elements: below bitsandbytes' paging size
    plain = estimate_json(capsys, *LLAMA_QLORA, "--set", "train.optimizer=adamw_torch")
    assert plain["paged_optimizer_bytes"] == 0
    text = (main(LLAMA_QLORA), capsys.readouterr().out)[1]
    assert "comparable to torch.cuda.max_memory_allocated" in text and "device total incl. CUDA context" in text


def test_activation_offloading_is_on_with_checkpointing_and_keeps_one_layer_input_at_the_peak(capsys, monkeypatch):
    """train.activation_offloading (auto: on with checkpointing): every layer's checkpointed input (tokens x hidden,
    bf16) waits in CPU RAM. TRL's OffloadActivations keeps its forward stash of 5 on the GPU until backward starts
    (the loss head's moment), then brings each input back alone for its layer's recompute: on Llama-3.1-8B at
    2 x 2048 tokens the recompute is the larger moment, so one input of 32 is on the GPU at the peak."""
    on = estimate_json(capsys, *LLAMA_QLORA)                                   # qlora.yaml: auto, checkpointing on
    off = estimate_json(capsys, *LLAMA_QLORA, "--set", "train.activation_offloading=false")
    layer_input = 2 * 2048 * 4096 * 2
    final = 2 * 2048 * 4096 * (4 + 2)                   # the final norm's fp32 input and the LM head's input
    assert on["memory"]["activations"] == pytest.approx(layer_input + final, abs=2)
    assert on["memory"]["backward_transient"] == pytest.approx(on["transients"]["backward_layer"], abs=2)
    assert off["memory"]["activations"] == pytest.approx(32 * layer_input + final, abs=2)
    assert on["cpu_offloaded_bytes"] == 31 * layer_input and off["cpu_offloaded_bytes"] == 0
    assert on["peak_memory_bytes"] < off["peak_memory_bytes"]
    # the loss head's moment: 5 stashed inputs + final + the loss head's tile, smaller than the recompute's here
    assert 5 * layer_input + on["transients"]["loss_head"] < layer_input + on["transients"]["backward_layer"]
    assert any("offloading" in a for a in on["assumptions"])
    unchecked = estimate_json(capsys, *LLAMA_QLORA, "--set", "gradient_checkpointing=false")
    assert unchecked["cpu_offloaded_bytes"] == 0                               # auto: off without checkpointing
    too_big = estimate_json(capsys, *LLAMA_QLORA, "--set", "train.batch_size=32",
                            "--set", "train.activation_offloading=false")
    assert any(a.startswith("train.activation_offloading: true ->") for a in too_big["advice"])
    # training: TRL gets the switch on a GPU only (its offloader needs an accelerator; on a CPU nothing to move)
    import torch
    from doctorkit.recipe import load_recipe
    from doctorkit.stages import shared_training_args
    checkpointed = load_recipe(QUICK, ["gradient_checkpointing=true"])
    assert shared_training_args(checkpointed, "out", False, torch.float32)["activation_offloading"] is False
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert shared_training_args(checkpointed, "out", False, torch.bfloat16)["activation_offloading"] is True
    assert shared_training_args(load_recipe(QUICK, []), "out", False, torch.bfloat16)["activation_offloading"] is False
    explicit = load_recipe(QUICK, ["train.activation_offloading=true"])        # true: also without checkpointing
    assert shared_training_args(explicit, "out", False, torch.bfloat16)["activation_offloading"] is True


def test_adapter_dtype_compute_halves_adapter_memory_and_casts_only_the_adapters(capsys):
    """lora.adapter_dtype: compute (torchtune's choice) keeps LoRA weights, gradients and AdamW states in bf16:
    half the bytes of PEFT's fp32 adapters; the base and P-tuning prefixes are untouched. auto (the default) is
    compute when the run computes in bf16 and fp32 otherwise (fp16 GPUs, CPUs)."""
    import torch
    from doctorkit.methods import lora
    from doctorkit.recipe import load_recipe
    from doctorkit.builtin.tiny import build_tiny
    fp32 = estimate_json(capsys, *LLAMA_QLORA, "--set", "lora.adapter_dtype=fp32")
    bf16 = estimate_json(capsys, *LLAMA_QLORA, "--set", "lora.adapter_dtype=compute")
    auto = estimate_json(capsys, *LLAMA_QLORA)                                       # rtx4090: bf16
    auto_t4 = estimate_json(capsys, *LLAMA_QLORA[:-4], "--gpu", "t4", *LLAMA_QLORA[-2:])  # T4: fp16, fp32 adapters
    n = fp32["trainable_params"]
    assert auto["memory"]["trainable_params"] == 2 * n and auto_t4["memory"]["trainable_params"] == 4 * n
    assert fp32["memory"]["trainable_params"] == fp32["memory"]["gradients"] == 4 * n
    assert bf16["memory"]["trainable_params"] == bf16["memory"]["gradients"] == 2 * n
    assert bf16["memory"]["optimizer_states"] == fp32["memory"]["optimizer_states"]   # 8-bit states either way
    adamw = estimate_json(capsys, *LLAMA_QLORA, "--set", "lora.adapter_dtype=compute",
                          "--set", "train.optimizer=adamw_torch")
    assert adamw["memory"]["optimizer_states"] == 2 * 2 * n                              # exp_avg + exp_avg_sq in bf16
    with pytest.raises(DoctorKitError, match="section 'lora' belongs to method lora"):   # P-tuning has no LoRA
        load_recipe("recipes/ptuning.yaml", ["lora.adapter_dtype=compute"])               # adapters to cast
    for dtype, wanted in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
        recipe = load_recipe(QUICK, ["lora.adapter_dtype=compute", f"dtype={dtype}"])
        model = lora.wrap(build_tiny(dtype=wanted)[0], recipe)
        assert {p.dtype for p in model.parameters() if p.requires_grad} == {wanted}
        assert {p.dtype for p in model.parameters() if not p.requires_grad} == {wanted}
    default = lora.wrap(build_tiny(dtype=torch.bfloat16)[0], load_recipe(QUICK, ["dtype=bf16"]))
    assert {p.dtype for p in default.parameters() if p.requires_grad} == {torch.bfloat16}  # auto: bf16 run
    kept = lora.wrap(build_tiny(dtype=torch.bfloat16)[0], load_recipe(QUICK, ["dtype=bf16", "lora.adapter_dtype=fp32"]))
    assert {p.dtype for p in kept.parameters() if p.requires_grad} == {torch.float32}      # PEFT's default
    fp16 = lora.wrap(build_tiny(dtype=torch.float16)[0], load_recipe(QUICK, ["dtype=fp16"]))
    assert {p.dtype for p in fp16.parameters() if p.requires_grad} == {torch.float32}      # auto: fp16 run
    with pytest.raises(DoctorKitError, match="adapter_dtype"):
        lora.wrap(build_tiny(dtype=torch.float16)[0], load_recipe(QUICK, ["lora.adapter_dtype=compute", "dtype=fp16"]))
    big = ["recipes/qlora.yaml", "--set", "train.batch_size=16", "--set", "lora.adapter_dtype=fp32",
           "--set", "train.activation_offloading=false",
           "--tokens-per-sample", "500"]
    advice = lambda gpu: " ".join(estimate_json(capsys, *big, "--gpu", gpu)["advice"])  # noqa: E731
    assert "lora.adapter_dtype: compute" in advice("a10") and "lora.adapter_dtype" not in advice("t4")  # T4: fp16


def test_memory_goals_file_is_what_the_estimator_says_today(tmp_path):
    """bench/results/memory-goals.json (README 'Memory goals') against a fresh run of bench.memory_goals: when the
    estimator changes, rerun `python -m bench.memory_goals` and update the README table from it."""
    from bench.memory_goals import main as goals
    from pathlib import Path
    goals(["--out", str(tmp_path / "goals.json")])
    fresh = json.loads((tmp_path / "goals.json").read_text(encoding="utf-8"))
    shipped = json.loads(Path("bench/results/memory-goals.json").read_text(encoding="utf-8"))
    assert fresh == shipped
    d = next(j for j in fresh["jobs"] if j["job"].startswith("d:"))["variants"]
    shipped_d = d["as shipped"]
    assert shipped_d["device_total_gib"] > shipped_d["reserved_peak_gib"] > shipped_d["tensor_peak_gib"]


def test_dpo_recipe_is_costed_on_its_preference_pairs():
    """DPO's data are pairs: cost counts, per pair, the longer of prompt+chosen and prompt+rejected exactly as
    training prepares them, or estimates the same rows from characters when no tokenizer loads offline."""
    from doctorkit.cost.tokens import data_tokens
    from doctorkit.data.preference import prepare_preferences
    from doctorkit.model import load_tokenizer
    from doctorkit.recipe import load_recipe

    recipe = load_recipe("recipes/dpo.yaml", [])
    counted = data_tokens(recipe)
    assert counted.lengths == prepare_preferences(recipe, load_tokenizer(recipe.model)).report.lengths
    assert "preference pair" in counted.how
    estimated = data_tokens(load_recipe("recipes/dpo.yaml", ["model=no-such-org/no-such-model"]))
    assert "estimated from characters" in estimated.how and len(estimated.lengths) == len(counted.lengths)
