"""The whole chain offline: stand-in teacher on 127.0.0.1 -> seed -> distill (builtin:tiny-mt) -> run -> score
-> cost, a killed bulk run that resumes, every record accounted for, and bad student / input errors."""
import json

import pytest
import torch

from doctorkit.errors import DoctorKitError
from doctorkit.recipe import load_recipe
from translate import bulk as bulk_module
from translate.bulk import bulk
from translate.cost import cost
from translate.distill import distill
from translate.recipe import TranslateRecipe, WorkFiles
from translate.score import corpus_scores, score
from translate.seed import seed
from translate_fixtures import english_records, teacher_server, write_jsonl, write_recipe  # noqa: F401

BAD_ROWS = [
    {"id": "bad-empty", "instruction": "Answer.", "input": "I feel sick.", "output": "  "},
    {"id": "bad-long", "instruction": "Answer.", "input": "See " + "x" * 300, "output": "OK."},
    "{not json",
]


@pytest.fixture
def one_thread():
    # generation on a shared 2-core box is many times faster without thread contention
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.mark.slow
def test_seed_distill_run_score_cost(tmp_path, teacher_server, one_thread, monkeypatch, capsys):
    rows = english_records(200)
    data = tmp_path / "en.jsonl"
    write_jsonl(data, rows[:100] + BAD_ROWS + rows[100:])
    path = write_recipe(tmp_path, teacher_server.base_url, data, seed_set={"n": 120})
    recipe = load_recipe(path, schema=TranslateRecipe)
    files = WorkFiles(recipe)

    seeded = seed(recipe)
    pairs = read_jsonl(files.pairs)
    assert seeded["records"] == 120 and len(pairs) >= 300 and seeded["teacher_calls"] == len({p["en"] for p in pairs})

    report = distill(recipe)
    assert (files.student / "config.json").is_file() and report["steps"] == 12
    held = read_jsonl(files.heldout)
    assert len(held) == report["pairs_heldout"] > 0
    # the report's numbers are sacrebleu's on the written held-out file
    assert report["after"]["bleu"] == corpus_scores([h["student"] for h in held], [h["zh"] for h in held])["bleu"]

    # kill the bulk run after two shards, then resume: finished shards are not translated again
    real_write, markers = bulk_module.write_atomic, []

    def dying_write(target, lines):
        real_write(target, lines)
        if target.name.endswith(".done.json"):
            markers.append(target)
            if len(markers) == 2:
                raise KeyboardInterrupt
    monkeypatch.setattr(bulk_module, "write_atomic", dying_write)
    with pytest.raises(KeyboardInterrupt):
        bulk(recipe)
    monkeypatch.setattr(bulk_module, "write_atomic", real_write)
    shard_calls = []
    real_shard = bulk_module.translate_shard
    monkeypatch.setattr(bulk_module, "translate_shard", lambda *a: shard_calls.append(1) or real_shard(*a))
    result = bulk(recipe)
    n_shards = -(-203 // recipe.run.shard_size)
    assert len(shard_calls) == n_shards - 2

    out, rejects = read_jsonl(files.translated), read_jsonl(files.rejects)
    assert result["records"] == 203 and len(out) + len(rejects) == 203
    assert sorted(r["id"] for r in out) == sorted(r["id"] for r in rows)
    reasons = {r["id"]: r["reason"] for r in rejects}
    assert reasons["bad-empty"].startswith("empty field messages.1.content")
    assert reasons["bad-long"].startswith("over-long segment that could not be split")
    assert any("malformed JSON" in r for r in reasons.values())
    by_id = {r["id"]: r for r in rows}
    for record in out:   # messages format: same turns, same ids, other keys untouched
        assert [m["role"] for m in record["messages"]] == ["user", "assistant"]
        assert record["topic"] == by_id[record["id"]]["topic"]
        assert record["messages"][0]["content"].count("\n") == 1   # instruction and input stayed apart
        assert all(m["content"].strip() for m in record["messages"])

    # directly trainable: the training kit's own reader takes every translated record, skipping none
    from doctorkit.data import DataReport, read_conversations
    from doctorkit.recipe import DataConfig
    report_ = DataReport()
    assert len(read_conversations(DataConfig(path=str(files.translated)), str(files.translated), report_)) == len(out)
    assert report_.samples_skipped == {}

    capsys.readouterr()
    scored = score(load_recipe(path, [f"score.hypotheses={files.heldout}", f"score.references={files.heldout}",
                                      "score.key=student", "score.ref_key=zh"], schema=TranslateRecipe))
    assert scored["bleu"] == report["after"]["bleu"] and scored["chrf"] == report["after"]["chrf"]

    money = cost(recipe)
    assert money["seed_teacher_usd"] == pytest.approx(seeded["cost_usd"]) and money["teacher_only_usd_est"] > 0
    assert money["bulk_records"] == 203 and (files.root / "cost.png").is_file()
    assert "bulk, teacher only" in capsys.readouterr().out


def test_unknown_student_model_is_one_line(tmp_path, teacher_server):
    from translate.student import load_student
    with pytest.raises(DoctorKitError, match="unknown builtin model"):
        load_student("builtin:nope")
    with pytest.raises(DoctorKitError) as err:
        load_student(str(tmp_path / "no-such-model"))
    assert "student.model" in str(err.value) and "\n" not in str(err.value)


def test_run_without_translatable_fields_is_one_line(tmp_path, teacher_server, capsys):
    data = tmp_path / "x.jsonl"
    write_jsonl(data, [{"text": "hello"}])
    path = write_recipe(tmp_path, teacher_server.base_url, data)
    from translate import run
    with pytest.raises(SystemExit) as exit_:
        run(["run", path])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "no translatable fields" in err and err.count("\n") == 1
