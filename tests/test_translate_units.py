"""Translate building blocks: segmenting, reading formats, recipe errors, score == sacrebleu, CLI help."""
import json
import subprocess
import sys

import pytest

from doctorkit.errors import DoctorKitError
from doctorkit.recipe import load_recipe
from translate.recipe import SourceData, TranslateRecipe
from translate.records import read_records, translated_record
from translate.segment import Unsplittable, join_field, split_field
from translate_fixtures import write_jsonl


def test_split_keeps_lines_and_respects_max_chars():
    text = "Dr. Smith saw me. I have a fever, a cough, and a headache! What now?\n\nTake 5 mg daily."
    lines = split_field(text, 30)
    assert len(lines) == 3 and lines[1] == []          # the blank line survives
    assert all(len(s) <= 30 for line in lines for s in line)
    assert " ".join(lines[0]).replace("  ", " ") == text.split("\n")[0]   # nothing dropped
    assert lines[0][0].startswith("Dr. Smith")          # no split after an abbreviation
    assert join_field([["甲", "乙"], [], ["丙"]]) == "甲乙\n\n丙"
    assert split_field("One. Two. Three.", 400) == [["One. Two. Three."]]  # short sentences packed together
    with pytest.raises(Unsplittable):
        split_field("x" * 50, 30)


def test_every_format_reads_to_messages(tmp_path):
    alpaca = tmp_path / "a.json"
    alpaca.write_text(json.dumps([{"instruction": "Answer.", "input": "I cough.", "output": "Rest.", "id": 7}]))
    sharegpt = tmp_path / "s.jsonl"
    write_jsonl(sharegpt, [{"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}],
                            "lang": "en"}])
    messages = tmp_path / "m.jsonl"
    write_jsonl(messages, [{"messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": ""}]},
                           "{broken"])
    csv_file = tmp_path / "c.csv"
    csv_file.write_text("question,answer\nI itch.,Use cream.\n")
    a, = read_records(SourceData(), alpaca)
    assert a.id == "7" and a.messages == [{"role": "user", "content": "Answer.\nI cough."},
                                          {"role": "assistant", "content": "Rest."}]
    s, = read_records(SourceData(), sharegpt)
    assert [m["role"] for m in s.messages] == ["user", "assistant"] and s.extra == {"lang": "en"}
    assert translated_record(s, ["你好", "您好"]) == {"id": "s-0", "messages": [
        {"role": "user", "content": "你好"}, {"role": "assistant", "content": "您好"}], "lang": "en"}
    c, = read_records(SourceData(), csv_file)
    assert c.messages[1]["content"] == "Use cream."
    with pytest.raises(DoctorKitError, match="no translatable fields"):
        read_records(SourceData(), messages)   # every record is broken or empty


def test_no_translatable_fields_is_one_line(tmp_path):
    data = tmp_path / "x.jsonl"
    write_jsonl(data, [{"text": "hello"}, {"text": "world"}])
    with pytest.raises(DoctorKitError) as err:
        read_records(SourceData(), data)
    assert str(data) in str(err.value) and "\n" not in str(err.value)


def test_recipe_typo_and_set(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text("teacher:\n  concurency: 3\n")
    with pytest.raises(DoctorKitError, match=r"unknown key 'teacher.concurency'.*teacher.concurrency"):
        load_recipe(path, schema=TranslateRecipe)
    path.write_text("seed_set:\n  n: 3\n")
    recipe = load_recipe(path, ["teacher.backoff_s=0.5", "student.method=lora"], schema=TranslateRecipe)
    assert recipe.seed_set.n == 3 and recipe.teacher.backoff_s == 0.5 and recipe.student.method == "lora"


def test_shipped_recipe_is_valid():
    recipe = load_recipe("recipes/translate.yaml", schema=TranslateRecipe)
    assert recipe.student.model == "Helsinki-NLP/opus-mt-en-zh"


def test_help_lists_steps():
    out = subprocess.run([sys.executable, "-m", "translate", "--help"], capture_output=True, text=True, check=True)
    for step in ("seed", "distill", "run", "score", "cost"):
        assert f"    {step} " in out.stdout


def test_score_equals_sacrebleu_cli(tmp_path, capsys):
    hyps = ["医生说你需要休息。", "我头痛三天了，怎么办？", "请每天服用500毫克。", "多喝水"]
    refs = ["医生说你要多休息。", "我头疼三天了，该怎么办？", "请每天服用 500 mg。", "多喝热水。"]
    (tmp_path / "h.txt").write_text("\n".join(hyps) + "\n", encoding="utf-8")
    write_jsonl(tmp_path / "r.jsonl", [{"messages": [{"role": "user", "content": "x"},
                                                    {"role": "assistant", "content": r}]} for r in refs])
    (tmp_path / "r.txt").write_text("\n".join(refs) + "\n", encoding="utf-8")
    recipe = tmp_path / "t.yaml"
    recipe.write_text("{}")
    from translate.score import score
    result = score(load_recipe(recipe, [f"score.hypotheses={tmp_path / 'h.txt'}",
                                        f"score.references={tmp_path / 'r.jsonl'}",
                                        "score.ref_key=messages.1.content"], schema=TranslateRecipe))
    cli = subprocess.run([sys.executable, "-m", "sacrebleu", str(tmp_path / "r.txt"), "-i", str(tmp_path / "h.txt"),
                          "-tok", "zh", "-m", "bleu", "chrf", "-w", "4"], capture_output=True, text=True, check=True)
    bleu, chrf = json.loads(cli.stdout)
    assert round(result["bleu"], 4) == bleu["score"] and round(result["chrf"], 4) == chrf["score"]
    assert result["bleu_signature"] == bleu["signature"] and result["chrf_signature"] == chrf["signature"]
    assert 0 < result["bleu"] < 100
    printed = capsys.readouterr().out
    assert f"BLEU = {bleu['score']:.2f}" in printed and bleu["signature"] in printed


def test_score_count_mismatch_is_one_line(tmp_path, capsys):
    (tmp_path / "h.txt").write_text("a\nb\n")
    (tmp_path / "r.txt").write_text("a\n")
    (tmp_path / "t.yaml").write_text(f"score:\n  hypotheses: {tmp_path / 'h.txt'}\n  references: {tmp_path / 'r.txt'}\n")
    with pytest.raises(SystemExit) as exit_:
        from translate import run
        run(["score", str(tmp_path / "t.yaml")])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "2 translations but" in err
