"""A quickstart-like tiny run trained once with data.mix (medical + general by ratio), then a three-exam
suite printed tuned vs base; every number recomputed from the written files."""
import json
from pathlib import Path

import pytest
import yaml

from doctorkit.evaluate import main
from doctorkit.evaluate.metrics import accuracy_with_ci, mcnemar_exact
from doctorkit.evaluate.suite import Suite
from doctorkit.recipe import load_recipe
from evaluate_helpers import read_jsonl

ROOT = Path(__file__).resolve().parent.parent
TOPICS = ["首都", "长江", "光速", "勾股定理", "唐诗", "光合作用", "地球自转", "水的沸点", "古代四大发明", "计算机"]


@pytest.fixture(scope="module")
def mixed_run(tmp_path_factory):
    from doctorkit.train import main as train_main

    base = tmp_path_factory.mktemp("mixrun")
    general = base / "general.jsonl"
    general.write_text("".join(json.dumps({"messages": [
        {"role": "user", "content": f"请简单介绍一下{topic}（第{i}问）"},
        {"role": "assistant", "content": f"{topic}是常识话题，这里给出简短说明{i}。"}]}, ensure_ascii=False) + "\n"
        for i in range(3) for topic in TOPICS), encoding="utf-8")  # 30 general conversations
    mix = f"[{{path: {ROOT / 'data/sample_zh.jsonl'}, weight: 0.8}}, {{path: {general}, weight: 0.2}}]"
    overrides = [f"output_dir={base / 'run'}", f"data.mix={mix}", "data.val_ratio=0", "train.max_steps=3",
                 "train.save_steps=100", "train.eval_steps=null", "train.batch_size=4", "train.max_seq_len=128"]
    assert train_main([str(ROOT / "recipes/quickstart.yaml"), *[a for o in overrides for a in ("--set", o)]]) == 0
    return base / "run", general


@pytest.mark.slow
def test_data_mix_trains_with_the_stated_ratio(mixed_run):
    run_dir, general = mixed_run
    mix = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))["data_mix"]
    sources = mix["sources"]
    medical = sources[str(ROOT / "data/sample_zh.jsonl")]
    assert sources[str(general)] == {"weight": 0.2, "available": 30, "used": 30}  # the scarce source is used whole
    assert medical["available"] == 300 and medical["used"] == 120  # 30 / 0.2 * 0.8: nothing repeated
    assert medical["used"] / mix["total"] == pytest.approx(0.8, abs=1e-9)


@pytest.mark.slow
def test_three_exam_suite_prints_tuned_vs_base(mixed_run, tmp_path, capsys):
    run_dir, _ = mixed_run
    out = tmp_path / "suite"
    shipped = load_recipe(ROOT / "data/suite_sample.yaml", schema=Suite)  # the documented suite, cut to 6 items an exam
    suite_file = tmp_path / "suite.yaml"
    suite_file.write_text(yaml.safe_dump({"exclude_contaminated": str(ROOT / "data" / shipped.exclude_contaminated),
                                          "exams": [exam.model_dump() | {"path": str(ROOT / "data" / exam.path),
                                                                          "max_samples": 6} for exam in shipped.exams]},
                                         allow_unicode=True), encoding="utf-8")
    assert main([str(run_dir), "--suite", str(suite_file), "--out", str(out)]) == 0
    table = capsys.readouterr().out
    suite = json.loads((out / "suite.json").read_text(encoding="utf-8"))
    assert [row["name"] for row in suite["exams"]] == ["医学单选（样例）", "医学多选（样例）", "常识（样例）"]
    assert set(suite["slices"]) == {"medical", "general"} and "general (mean)" in table
    assert "dropped 0 contaminated items" in table  # our sample dialogs share no 13-character run with the exams
    for row in suite["exams"]:
        assert row["name"] in table
        tuned = read_jsonl(Path(row["out_dir"]) / "predictions.jsonl")
        base = read_jsonl(Path(row["out_dir"]) / "base_predictions.jsonl")
        assert row["tuned"]["ci95"] == accuracy_with_ci([r["correct"] for r in tuned])["ci95"]
        assert row["base"]["accuracy"] == accuracy_with_ci([r["correct"] for r in base])["accuracy"]
        assert row["mcnemar"] == mcnemar_exact([r["correct"] for r in tuned], [r["correct"] for r in base])
        assert [r["scores"] for r in tuned] != [r["scores"] for r in base]  # the adapter was switched off
    assert (out / "suite.png").stat().st_size > 0
    from doctorkit.evaluate.report import cjk_font
    assert (out / "suite_labels.md").is_file() == (cjk_font() is None)


def test_mcnemar_exact_known_values():
    # b=0, c=5: p = 2 * 0.5^5 = 0.0625; b=c: p = 1; b=1, c=9: 2 * (1 + 10) / 1024
    assert mcnemar_exact([False] * 5, [True] * 5)["p_value"] == 0.0625
    assert mcnemar_exact([True, False], [False, True])["p_value"] == 1.0
    assert mcnemar_exact([True] + [False] * 9, [False] + [True] * 9)["p_value"] == pytest.approx(22 / 1024, abs=1e-6)
    assert mcnemar_exact([True, True], [True, True]) == {"tuned_only": 0, "base_only": 0, "p_value": 1.0}


@pytest.mark.parametrize("font", [None, "found"])
def test_suite_chart_labels_chinese_names_or_falls_back_to_a_legend(font, tmp_path, monkeypatch):
    from doctorkit.evaluate import suite_chart
    from doctorkit.evaluate.report import cjk_font

    if font == "found":
        font = cjk_font()
        if font is None:
            pytest.skip("no CJK font installed (make cjk-fonts as root)")
    monkeypatch.setattr(suite_chart, "cjk_font", lambda: font)
    part = {"accuracy": 0.5, "ci95": [0.3, 0.7], "partial_credit": 0.5}
    rows = [{"name": name, "slice": "medical", "tuned": part, "base": part, "mcnemar": {"p_value": 0.01}}
            for name in ("医学综合", "MedQA")]
    files = suite_chart.plot_suite(rows, tmp_path)
    assert (tmp_path / "suite.png").stat().st_size > 0
    if font is None:
        legend = (tmp_path / suite_chart.LABELS_FILE).read_text(encoding="utf-8")
        assert files == ["suite.png", suite_chart.LABELS_FILE] and "| S1 | 医学综合 |" in legend and "| S2 | MedQA |" in legend
    else:
        assert files == ["suite.png"] and not (tmp_path / suite_chart.LABELS_FILE).exists()
