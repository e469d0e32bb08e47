"""Smoke test of the speed harness: two baseline steps, both arms, counters that must agree."""
import json

import pytest

from bench import train_speed


@pytest.mark.slow
def test_train_speed_writes_comparable_arms(tmp_path):
    out = tmp_path / "result.json"
    assert train_speed.main(["--model", "builtin:tiny", "--steps", "2", "--batch-size", "4", "--repeats", "1",
                             "--max-seq-len", "128", "--variant", "packing", "--out", str(out)]) == 0
    result = json.loads(out.read_text(encoding="utf-8"))
    baseline, ours = result["results"]
    assert (baseline["arm"], ours["arm"], ours["variant"]) == ("baseline", "ours", "packing")
    # same samples, so the same real and supervised tokens; only the baseline computes padding
    assert ours["tokens"] == baseline["tokens"] and ours["supervised_tokens"] == baseline["supervised_tokens"]
    assert ours["positions"] == ours["tokens"] and ours["padding_share"] == 0
    assert baseline["positions"] > baseline["tokens"]
    assert baseline["padding_share"] == pytest.approx(1 - baseline["tokens"] / baseline["positions"], abs=1e-4)
    assert 0 < ours["cpu_s"] and ours["supervised_tokens_per_steady_cpu_s"] > ours["supervised_tokens_per_cpu_s"]  # no setup
    assert ours["ratio_supervised_tokens_per_s"] == pytest.approx(
        ours["supervised_tokens_per_s"] / baseline["supervised_tokens_per_s"], rel=1e-2)
    for record in (baseline, ours):  # the fields the cost estimator calibrates from
        for key in ("gpu", "model", "method", "seq_len", "batch", "tokens_per_s", "peak_memory_bytes", "matmul_efficiency"):
            assert record[key] is not None
        assert record["mfu"] is None   # a CPU has no catalog peak: no MFU the estimator could use


def test_packing_arms_compared_with_the_grouped_arm_and_its_padding():
    records = [{"variant": "padding-random", "padding_share": 0.5, "supervised_tokens_per_s": 100.0,
                "supervised_tokens_per_cpu_s": 90.0},
               {"variant": "group_by_length", "padding_share": 0.2, "supervised_tokens_per_s": 200.0,
                "supervised_tokens_per_cpu_s": 180.0},
               {"variant": "packing", "padding_share": 0.0, "supervised_tokens_per_s": 230.0,
                "supervised_tokens_per_cpu_s": 225.0}]
    records[1]["supervised_tokens_per_steady_cpu_s"], records[2]["supervised_tokens_per_steady_cpu_s"] = 200.0, 260.0
    train_speed.add_grouped_ratios(records)
    assert records[1]["padding_removal_gain"] == 1.25          # 1 / (1 - 0.2)
    assert records[2]["vs_group_by_length_supervised_tokens_per_s"] == 1.15
    assert records[2]["vs_group_by_length_supervised_tokens_per_cpu_s"] == 1.25
    assert records[2]["vs_group_by_length_supervised_tokens_per_steady_cpu_s"] == 1.3
    assert "vs_group_by_length_supervised_tokens_per_s" not in records[0]


def test_cost_calibrates_from_bench_results_but_not_from_cpu_runs(tmp_path):
    from doctorkit.cost.catalog import find_gpu
    from doctorkit.cost.speed import efficiency

    arms = [{"gpu": "cpu", "method": "lora", "mfu": 0.09}, {"gpu": "h100-80gb", "method": "lora", "mfu": 0.41}]
    (tmp_path / "gpu.json").write_text(json.dumps({"machine": {}, "results": arms}), encoding="utf-8")
    assert efficiency("lora", find_gpu("h100-80gb"), tmp_path)[0] == 0.41
    (tmp_path / "gpu.json").write_text(json.dumps({"results": arms[:1]}), encoding="utf-8")
    mfu, why = efficiency("lora", find_gpu("h100-80gb"), tmp_path)
    assert "stated default" in why and mfu != 0.09
