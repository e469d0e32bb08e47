"""De-identification where data moves: the command, training data preparation, translate seed, canaries."""
import contextlib
import io
import json
import math
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from doctorkit.deid.canary import candidate_secrets, exposure, insert, make_canaries
from doctorkit.errors import DoctorKitError
from doctorkit.evaluate.tasks import EvalOptions, canary as canary_task
from translate_fixtures import teacher_server  # noqa: F401  (fixture)

ROOT = Path(__file__).resolve().parent.parent
PLANTED = ["王建军", "13812345678", "zhang.wei@163.com", "ZY20230012"]


def _records():
    return [
        {"id": "a", "messages": [{"role": "user", "content": "我叫王建军，电话13812345678，头疼三天"},
                                 {"role": "assistant", "content": "王建军您好，布洛芬每次0.3g，两天不好来复查。"}]},
        {"id": "b", "messages": [{"role": "user", "content": "报告发到zhang.wei@163.com"},
                                 {"role": "assistant", "content": "好的，住院号：ZY20230012 已登记。"}]},
        "{broken",
        {"id": "c", "messages": [{"role": "user", "content": "喉咙痛"}, {"role": "assistant", "content": "多喝水。"}]},
    ]


def _write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows),
                    encoding="utf-8")
    return path


def _cli(*args):
    """`python -m doctorkit.deid ARGS` in this process (the import of jieba is paid once): rc, stdout, stderr."""
    from doctorkit.deid.command import run

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            run(list(map(str, args)))
        except SystemExit as done:
            code = done.code
    return SimpleNamespace(returncode=code, stdout=out.getvalue(), stderr=err.getvalue())


def test_command_keeps_ids_roles_order_counts_skips_and_reports(tmp_path):
    source, out, report_path = _write(tmp_path / "in.jsonl", _records()), tmp_path / "out.jsonl", tmp_path / "r.json"
    done = _cli(source, "--out", out, "--report", report_path, "--keep-map", tmp_path / "map.jsonl")
    assert done.returncode == 0, done.stderr
    assert "RE-IDENTIFIES" in done.stderr
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in rows] == ["a", "b", "c"]
    assert [[m["role"] for m in r["messages"]] for r in rows] == [["user", "assistant"]] * 3
    text = out.read_text(encoding="utf-8")
    assert not any(value in text for value in PLANTED) and "布洛芬每次0.3g，两天不好来复查" in text
    report = json.loads(report_path.read_text(encoding="utf-8"))
    assert report["records_written"] == 3 and report["records_touched"] == 2
    assert report["records_skipped"] == {"malformed": 1} and report["problems"][0].startswith(f"{source}:3:")
    # counts recomputed from the written file: every replacement left one tag behind
    tags = {kind: text.count(f"【{label}") for kind, label in (("NAME", "姓名"), ("PHONE", "电话"), ("EMAIL", "邮箱"),
                                                                ("RECORD", "病历号"))}
    assert report["replacements"] == tags == {"NAME": 2, "PHONE": 1, "EMAIL": 1, "RECORD": 1}
    mapping = [json.loads(line) for line in (tmp_path / "map.jsonl").read_text(encoding="utf-8").splitlines()]
    assert {m["original"] for m in mapping} == set(PLANTED)


def test_command_reads_sharegpt_and_alpaca(tmp_path):
    _write(tmp_path / "s.jsonl", [{"id": 7, "conversations": [{"from": "human", "value": "我叫王建军"},
                                                              {"from": "gpt", "value": "王建军您好"}]}])
    _write(tmp_path / "a.jsonl", [{"instruction": "电话13812345678", "output": "收到"}])
    for name, first in (("s", "我叫【姓名1】"), ("a", "电话【电话1】")):
        assert _cli(tmp_path / f"{name}.jsonl", "--out", tmp_path / f"{name}.out").returncode == 0
        line = json.loads((tmp_path / f"{name}.out").read_text(encoding="utf-8"))
        assert line["messages"][0] == {"role": "user", "content": first}
        assert line["id"] == ("7" if name == "s" else "a-0")


def test_command_reads_csv_in_gb18030(tmp_path):
    source = tmp_path / "in.csv"
    source.write_bytes("question,answer\n我叫王建军，电话13812345678,多休息\n".encode("gb18030"))
    done = _cli(source, "--out", tmp_path / "o.jsonl", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["replacements"] == {"NAME": 1, "PHONE": 1}
    line = json.loads((tmp_path / "o.jsonl").read_text(encoding="utf-8"))
    assert line["id"] == "in-0" and line["messages"][0]["content"] == "我叫【姓名1】，电话【电话1】"


def test_command_bad_input_is_one_line(tmp_path):
    done = subprocess.run([sys.executable, "-m", "doctorkit.deid", str(tmp_path / "missing.jsonl"), "--out",
                           str(tmp_path / "o.jsonl")], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 2 and done.stderr.strip().count("\n") == 0 and "input file not found" in done.stderr
    _write(tmp_path / "bad.jsonl", ["{broken"])
    done = _cli(tmp_path / "bad.jsonl", "--out", tmp_path / "o.jsonl")
    assert done.returncode == 2 and "no readable record (1 malformed" in done.stderr


def test_training_data_is_deidentified_and_counted(tmp_path):
    from doctorkit.data import prepare
    from doctorkit.model import load_tokenizer
    from doctorkit.recipe import Recipe

    source = _write(tmp_path / "d.jsonl", [r for r in _records() if not isinstance(r, str)])
    recipe = Recipe.model_validate({"data": {"path": str(source), "deid": True, "canaries": 1, "canary_repeats": 3},
                                    "train": {"max_seq_len": 256}})
    tokenizer = load_tokenizer("builtin:tiny")
    prepared = prepare(recipe, tokenizer)
    texts = [tokenizer.decode(row["input_ids"]) for row in prepared.train]
    assert not any(value in t for t in texts for value in PLANTED)
    assert prepared.report.deid_replacements == {"EMAIL": 1, "NAME": 2, "PHONE": 1, "RECORD": 1}
    assert prepared.report.deid_records == 2 and "de-identified 2 conversations" in prepared.report.summary()
    inserted = [c for c in prepared.canaries if c["inserted"]]
    assert len(prepared.canaries) == 2 and len(inserted) == 1 and prepared.report.canaries == 3
    assert sum(inserted[0]["secret"] in t for t in texts) == 3 and len(prepared.train) == 3 + 3
    assert not any(prepared.canaries[1]["secret"] in t for t in texts)   # the control is never trained on


def test_canary_exposure_arithmetic_and_insertion():
    assert exposure(-1.0, [-2.0] * 1000) == (1, pytest.approx(math.log2(1001)))
    assert exposure(-3.0, [-2.0] * 500 + [-4.0] * 500) == (501, pytest.approx(math.log2(1001 / 501)))
    canaries = make_canaries(2, repeats=4, seed=0)
    assert [c["repeats"] for c in canaries] == [4, 4, 0, 0] and make_canaries(2, 4, 0) == canaries
    secrets = candidate_secrets(canaries[0], 50)
    assert len(set(secrets)) > 45 and canaries[0]["secret"] not in secrets and all(len(s) == 8 for s in secrets)
    assert len(insert([[{"role": "user", "content": "x"}]] * 5, canaries, 0)) == 5 + 8


def test_canary_task_flags_only_what_the_scorer_remembers():
    items = [canary_task.to_item(c) for c in make_canaries(1, repeats=9, seed=1)]
    remembered = items[0]["secret"]

    def scorer(pairs):   # a fake model: likes exactly the remembered reply, the rest by length noise
        from doctorkit.model import load_tokenizer
        tok = load_tokenizer("builtin:tiny")
        return [0.0 if remembered in tok.decode(target) else -10.0 - (i % 7) for i, (_, target) in enumerate(pairs)]

    from doctorkit.model import load_tokenizer
    records = canary_task.predict(None, load_tokenizer("builtin:tiny"), items, EvalOptions(), scorer=scorer,
                                  candidates=100)
    scores = canary_task.score(records)
    assert records[0]["rank"] == 1 and records[1]["rank"] > 1
    assert scores["inserted_memorized_share"] == 1.0 and scores["control_memorized_share"] == 0.0


@pytest.mark.slow
def test_tiny_model_memorizes_a_repeated_canary_but_not_a_control(tmp_path):
    # ~1-2 min on 2 idle cores: 40 LoRA steps on 12 dialogs + 30 copies of one canary, then 2 x 201 scores
    from doctorkit.evaluate.loading import load_target
    from doctorkit.recipe import load_recipe
    from doctorkit.train import train

    data = tmp_path / "d.jsonl"
    lines = (ROOT / "data" / "sample_zh.jsonl").read_text(encoding="utf-8").splitlines()[:12]
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    recipe = load_recipe(ROOT / "recipes" / "quickstart.yaml", [
        f"output_dir={tmp_path / 'run'}", f"data.path={data}", "data.val_ratio=0", "data.canaries=1",
        "data.canary_repeats=30", "train.max_steps=40", "train.batch_size=8", "train.max_seq_len=96",
        "train.eval_steps=null", "train.save_steps=1000", "train.learning_rate=5e-3"])
    run_dir = train(recipe)
    target = load_target(str(run_dir))
    items = canary_task.load(run_dir / "canaries.jsonl").items
    records = canary_task.predict(target.model, target.tokenizer, items, EvalOptions(), candidates=200)
    inserted, control = records
    assert inserted["inserted"] and inserted["rank"] <= 2, records
    assert not control["inserted"] and control["rank"] > 2, records


def test_remote_teacher_without_deid_needs_explicit_permission(capsys):
    from translate.privacy import is_loopback, outgoing_filter
    from translate.recipe import TeacherConfig

    assert is_loopback("http://127.0.0.1:8000/v1") and is_loopback("http://localhost/v1") and is_loopback("http://[::1]/")
    assert not is_loopback("https://api.openai.com/v1")
    remote = TeacherConfig(deid=False)
    with pytest.raises(DoctorKitError, match="allow_identifiable"):
        outgoing_filter(remote, 0)
    send, scrubber = outgoing_filter(TeacherConfig(deid=False, allow_identifiable=True), 0)
    assert scrubber is None and "WITHOUT de-identification" in capsys.readouterr().err
    send, scrubber = outgoing_filter(TeacherConfig(deid=False, base_url="http://127.0.0.1:9/v1"), 0)
    assert capsys.readouterr().err == "" and send([{"role": "user", "content": "Dr. Brown"}], "x")[0]["content"] == "Dr. Brown"


def test_translate_seed_sends_only_deidentified_text(tmp_path, teacher_server):
    from doctorkit.recipe import load_recipe
    from translate.recipe import TranslateRecipe, WorkFiles
    from translate.seed import seed
    from translate_fixtures import english_records, write_jsonl, write_recipe

    rows = english_records(4)
    rows[0]["input"] = "Doctor, I am Mr. Smith, call me at (555) 123-4567 or mail smith@example.org. I have a cough."
    rows[1]["output"] = "Dr. Brown will see you on March 5, 2023. Drink more water."
    write_jsonl(tmp_path / "en.jsonl", rows)
    path = write_recipe(tmp_path, teacher_server.base_url, tmp_path / "en.jsonl", seed_set={"n": 4},
                        teacher={"concurrency": 1})
    recipe = load_recipe(path, schema=TranslateRecipe)
    report = seed(recipe)
    sent = "\n".join(teacher_server.billed)
    for secret in ("Smith", "123-4567", "smith@example.org", "Brown", "March 5, 2023"):
        assert secret not in sent
    assert "Drink more water." in sent and "I have a cough." in sent   # the medical text still goes
    pairs = WorkFiles(recipe).pairs.read_text(encoding="utf-8")
    assert "Smith" not in pairs and report["deid_replacements"]["NAME"] == 2
    assert seed(recipe)["teacher_calls"] == 0   # cache keyed on the de-identified text: a rerun is free


def test_evaluate_needs_data_unless_the_task_names_a_run_file(tmp_path):
    from doctorkit.evaluate.command import main

    with pytest.raises(DoctorKitError, match="--data is required for --task dialog"):
        main([str(tmp_path), "--task", "dialog"])
    with pytest.raises(DoctorKitError, match="canaries.jsonl: evaluation data file not found"):
        main([str(tmp_path), "--task", "canary"])   # the default file inside the run directory
