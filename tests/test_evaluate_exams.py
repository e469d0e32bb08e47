"""Exams as published: every layout detected and scored, multi-answer scoring, CoT / self-consistency,
few-shot, contamination. Model calls use the embedded tiny model; scoring tests inject fake scorers."""
import json
import math
import random

import pytest

from doctorkit.data.overlap import longest_overlaps
from doctorkit.errors import DoctorKitError
from doctorkit.evaluate import evaluate_model, main, run
from doctorkit.evaluate.choices import best_threshold, choose_several, credit, parse_letters, pick_shots, vote
from doctorkit.evaluate.exams import read_exam
from doctorkit.evaluate.tasks import mcq
from evaluate_helpers import read_jsonl
from exam_layouts import MULTI_LAYOUTS, questions, write

LAYOUTS = ["cmmlu", "ceval", "cmb", "cmexam", "medqa", "medmcqa", "jsonl"]


@pytest.fixture(scope="module")
def tiny():
    from doctorkit.builtin.tiny import build_tiny
    return build_tiny()


def oracle(model, tokenizer, items, options):
    return [{k: 0.0 if k in item["answer"] else -10.0 for k in item["options"]} for item in items]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_each_layout_is_detected_and_scored_perfect_and_at_chance(layout, tiny, tmp_path):
    items = questions(300, seed=LAYOUTS.index(layout), multi=layout in MULTI_LAYOUTS)
    path = write(layout, tmp_path / layout, items)
    loaded = read_exam(path)
    assert {i["format"] for i in loaded.items} == {layout} and len(loaded.items) == 300 and not loaded.skipped
    assert sorted(i["answer"] for i in loaded.items) == sorted(q["answer"] for q in items)
    assert sum(i["multi"] for i in loaded.items) == sum(q["multi"] for q in items)
    model, tokenizer = tiny
    perfect = evaluate_model(model, tokenizer, path, "mcq", tmp_path / "perfect", scorer=oracle)["results"]["model"]
    assert perfect["accuracy"] == 1.0 and perfect["partial_credit"] == 1.0
    rows = read_jsonl(tmp_path / "perfect" / "predictions.jsonl")
    assert all(r["pred"] == r["gold"] and r["correct"] for r in rows)

    rng = random.Random(7)

    def shuffled(model, tokenizer, items, options):  # the oracle's scores on randomly permuted letters
        out = []
        for scores in oracle(model, tokenizer, items, options):
            letters = list(scores)
            values = list(scores.values())
            rng.shuffle(values)
            out.append(dict(zip(letters, values)))
        return out

    summary = evaluate_model(model, tokenizer, path, "mcq", tmp_path / "chance", scorer=shuffled)
    chance = summary["results"]["model"]
    rows = read_jsonl(tmp_path / "chance" / "predictions.jsonl")
    # a random set of the right size is exactly right with p = 1 / C(n, k): mean and binomial sd from that
    p = [1 / math.comb(len(i["options"]), len(i["answer"])) for i in loaded.items]
    sd = math.sqrt(sum(x * (1 - x) for x in p)) / len(p)
    assert abs(chance["accuracy"] - sum(p) / len(p)) < 4 * sd
    assert chance["correct"] == sum(r["correct"] for r in rows)  # recomputes from predictions.jsonl
    for row in rows:  # each prediction follows from its written scores: argmax, or the multi-answer rule
        best = max(row["scores"], key=row["scores"].get)
        assert row["pred"] == (choose_several(row["scores"]) if row["type"] == "multi" else best)
    assert chance["partial_credit"] == pytest.approx(sum(credit(r["pred"], r["gold"]) for r in rows) / len(rows), abs=1e-4)
    if layout in MULTI_LAYOUTS:
        multi = chance["by_type"]["multi"]
        assert multi["total"] == sum(q["multi"] for q in items) and chance["by_type"]["single"]["total"] + multi["total"] == 300
        # a set of the right size is a subset of the gold set only when it equals it: credit == accuracy here
        assert multi["partial_credit"] == multi["accuracy"]


def test_layout_details_subjects_multi_and_bad_records(tmp_path):
    items = questions(4, seed=1, multi=True)
    cmmlu = read_exam(write("cmmlu", tmp_path / "cmmlu", items))
    assert {i["subject"] for i in cmmlu.items} == {"anatomy", "clinical_knowledge"}  # subject from the file name
    picked = read_exam([tmp_path / "cmmlu" / "anatomy.csv", tmp_path / "cmmlu" / "clinical_knowledge.csv"])  # a list
    assert len(picked.items) == 4 and {i["subject"] for i in picked.items} == {"anatomy", "clinical_knowledge"}
    ceval = read_exam(write("ceval", tmp_path / "ceval", questions(2, 1, False)))
    assert {i["subject"] for i in ceval.items} == {"clinical_medicine"}  # split suffix dropped
    cmb = read_exam(write("cmb", tmp_path / "cmb", items)).items
    assert [i["multi"] for i in cmb] == [q["multi"] for q in items] and "E" not in cmb[0]["options"]  # empty E dropped
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "opa": "x", "opb": "y", "opc": "z", "opd": "w", "cop": 0}\n'
                   '{"question": "q", "opa": "x", "opb": "y", "opc": "z", "opd": "w", "cop": 2}\n', encoding="utf-8")
    loaded = read_exam(bad)
    assert [i["answer"] for i in loaded.items] == ["B"] and "1-based" in loaded.skipped[0]
    unpublished = tmp_path / "c_test.csv"
    unpublished.write_text("id,question,A,B,C,D,answer,explanation\n0,题,a,b,c,d,,\n1,题2,a,b,c,d,C,\n", encoding="utf-8")
    assert "no answer" in read_exam(unpublished).skipped[0]


@pytest.mark.parametrize("content, args, message", [
    ('{"foo": 1}\n', [], "not multiple-choice records in a known layout (found: foo; known exam formats: cmmlu"),
    ('{"question": "q", "options": {"A": "x", "B": "y"}, "answer": "A"}\n', ["--format", "cmb"], "not the cmb layout"),
    ('{"question": "q", "options": {"A": "x", "B": "y"}, "answer": "A"}\n', ["--format", "gaokao"], "unknown exam format 'gaokao'"),
])
def test_wrong_or_unknown_layout_is_one_line_naming_the_formats(tmp_path, capsys, content, args, message):
    path = tmp_path / "exam.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(SystemExit) as code:
        run(["builtin:tiny", "--data", str(path), "--task", "mcq", *args])
    err = capsys.readouterr().err.strip()
    assert code.value.code == 2 and message in err and "\n" not in err and "medmcqa" in err


def test_choices_units():
    assert choose_several({"A": 0.0, "B": 0.0, "C": -9.0, "D": -9.0}) == "AB"
    assert choose_several({"A": 0.0, "B": -5.0, "C": -9.0, "D": -9.0}) == "AB"  # at least two letters
    assert choose_several({"A": 0.0, "B": -0.1, "C": -0.2, "D": -9.0}) == "ABC"  # each above 1/4
    assert choose_several({"A": 0.0, "B": -0.1, "C": -0.2, "D": -9.0}, threshold=0.34) == "AB"
    assert credit("AC", "ACD") == pytest.approx(2 / 3) and credit("AB", "ACD") == 0 and credit(None, "A") == 0
    assert credit("ACD", "ACD") == 1.0
    assert vote(["B", None, "A", "A", "B"]) == "B"  # tie: the answer reached first
    assert vote([None, None]) is None and vote(["AC", "AC", "B"]) == "AC"
    assert parse_letters("选项 A 不对，B 也不对。\n答案：C、D", {k: 1 for k in "ABCD"}) == "CD"


def test_shots_come_from_dev_never_test(tmp_path, tiny):
    test_items = questions(6, seed=3, multi=False)
    dev_items = questions(4, seed=4, multi=False, prefix="练习")
    dev_items[0] = dict(test_items[1])  # a test question that leaked into the dev file
    test_path = write("jsonl", tmp_path / "test", test_items)
    dev_path = write("jsonl", tmp_path / "dev", dev_items)
    dev = read_exam(dev_path).items
    chosen = pick_shots(dev, read_exam(test_path).items, 2)
    assert all(s["question"] not in {q["question"] for q in test_items} for shots in chosen.values() for s in shots)
    assert all(len(shots) == 2 for shots in chosen.values())
    model, tokenizer = tiny
    evaluate_model(model, tokenizer, test_path, "mcq", tmp_path / "o", max_samples=2,
                   options=mcq.Options(shots=2, shots_from=str(dev_path)))
    rows = read_jsonl(tmp_path / "o" / "predictions.jsonl")
    assert all(len(r["shots"]) == 2 and "q0" not in r["shots"] for r in rows)
    conversation = mcq.conversations_of(read_exam(test_path).items[:1], mcq.Options(shots=2), chosen)[0]
    assert [t["role"] for t in conversation] == ["user", "assistant"] * 2 + ["user"]
    with pytest.raises(DoctorKitError, match="--shots needs --shots-from"):
        mcq.shots_for(read_exam(test_path).items, mcq.Options(shots=1))


def test_self_consistency_votes_over_kept_chains(tiny, tmp_path, monkeypatch):
    chains = iter([["分析……\n答案：A", "答案：B", "答案：B"], ["答案：AC", "我选 A、C", "答案：D"]])
    monkeypatch.setattr(mcq, "sample_replies", lambda model, tok, convs, n, *a, **k: [next(chains) for _ in convs][:len(convs)])
    path = write("jsonl", tmp_path / "e", questions(3, seed=5, multi=True)[:2])
    model, tokenizer = tiny
    evaluate_model(model, tokenizer, path, "mcq", tmp_path / "o", options=mcq.Options(cot=True, samples=3))
    rows = read_jsonl(tmp_path / "o" / "predictions.jsonl")
    assert [[c["pred"] for c in r["chains"]] for r in rows] == [["A", "B", "B"], ["AC", "AC", "D"]]
    assert [r["pred"] for r in rows] == ["B", "AC"]


def test_cot_self_consistency_end_to_end_on_tiny_model(tmp_path, capsys):
    out = tmp_path / "cot"
    assert main(["builtin:tiny", "--data", "data/mcq_multi_sample_zh.jsonl", "--task", "mcq", "--cot", "--samples", "3",
                 "--max-samples", "2", "--max-new-tokens", "8", "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    rows = read_jsonl(out / "predictions.jsonl")
    letters = {k: 1 for k in "ABCD"}
    for row in rows:
        assert len(row["chains"]) == 3 and len({c["reply"] for c in row["chains"]}) > 1  # sampled, not greedy
        assert all(c["pred"] == parse_letters(c["reply"], letters) for c in row["chains"])
        assert row["pred"] == vote([c["pred"] for c in row["chains"]])  # the vote recomputes from the chains
        assert row["correct"] == (row["pred"] == row["gold"])
    assert summary["results"]["model"]["correct"] == sum(r["correct"] for r in rows)
    assert summary["options"]["samples"] == 3 and summary["options"]["cot"] is True


def test_overlap_finds_planted_runs_and_no_false_ones(tmp_path, capsys):
    exam = [json.loads(line) for line in open("data/mcq_sample_zh.jsonl", encoding="utf-8")]
    q3, q5 = exam[3]["question"], exam[5]["question"]
    train = ["【" + q3[:12] + "】", "医生说：【" + q5 + "】请复查。", "无关的句子。"]
    found = longest_overlaps(train, [q3, q5, exam[0]["question"]])
    assert [o.longest for o in found] == [12, len(q5.replace(" ", "")), 0]
    assert found[1].shared == q5.replace(" ", "")
    # our own files share no 13-character run: the sample dialogs were written apart from the sample exams
    for exam_file in ("data/mcq_sample_zh.jsonl", "data/general_mcq_zh.jsonl", "data/mcq_multi_sample_zh.jsonl"):
        from doctorkit.data.__main__ import main as data_main
        assert data_main(["overlap", "data/sample_zh.jsonl", exam_file, "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["flagged"] == []


def test_exclude_contaminated_drops_and_counts(tiny, tmp_path):
    exam = [json.loads(line) for line in open("data/mcq_sample_zh.jsonl", encoding="utf-8")]
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"请解答：{q['question']}"},
                                                      {"role": "assistant", "content": "好的"}]}, ensure_ascii=False) + "\n"
                             for q in exam[:4] if len(q["question"]) >= 13), encoding="utf-8")
    planted = sum(1 for q in exam[:4] if len(q["question"]) >= 13)
    summary = evaluate_model(*tiny, "data/mcq_sample_zh.jsonl", "mcq", tmp_path / "o", scorer=oracle,
                             exclude_contaminated=str(train))
    assert summary["contamination"]["dropped"] == planted > 0 and summary["samples"] == 20 - planted
    assert len(read_jsonl(tmp_path / "o" / "predictions.jsonl")) == 20 - planted


def test_overlap_cli_text_and_bad_input(tmp_path, capsys):
    from doctorkit.data.__main__ import run as data_run

    exam = [json.loads(line) for line in open("data/mcq_sample_zh.jsonl", encoding="utf-8")]
    train = tmp_path / "train.jsonl"
    train.write_text(json.dumps({"messages": [{"role": "user", "content": "【" + exam[2]["question"] + "】"},
                                              {"role": "assistant", "content": "好"}]}, ensure_ascii=False) + "\n", encoding="utf-8")
    from doctorkit.data.__main__ import main as data_main
    assert data_main(["overlap", str(train), "data/mcq_sample_zh.jsonl"]) == 0
    out = capsys.readouterr().out
    assert "20 exam items checked" in out and "1 share >= 13 characters" in out and exam[2]["question"][:10] in out
    for argv, message in ((["overlap", "data/mcq_sample_zh.jsonl", "data/mcq_sample_zh.jsonl"], "no training conversation read"),
                          (["overlap", str(train), "data/sample_zh.jsonl"], "not multiple-choice records"),
                          (["overlap", str(train), "data/mcq_sample_zh.jsonl", "--min-chars", "5"], "not tracked")):
        with pytest.raises(SystemExit) as code:
            data_run(argv)
        err = capsys.readouterr().err.strip()
        assert code.value.code == 2 and message in err and "\n" not in err


def test_multi_threshold_calibrates_on_dev_not_test(tiny, tmp_path):
    # dev scores: gold letters at 0, others at -1.5 -> gold sets of 2 of 4 get p ~ 0.41 each, others ~ 0.09
    def scorer(model, tokenizer, items, options):
        return [{k: 0.0 if k in item["answer"] else -1.5 for k in item["options"]} for item in items]

    dev = write("jsonl", tmp_path / "dev", [q for q in questions(30, 8, True, prefix="练习") if q["multi"]])
    test = write("jsonl", tmp_path / "test", questions(30, 9, True))
    scores = scorer(None, None, read_exam(dev).items, None)
    threshold = best_threshold(scores, [i["answer"] for i in read_exam(dev).items])
    assert all(choose_several(s, threshold) == i["answer"] for s, i in zip(scores, read_exam(dev).items))
    summary = evaluate_model(*tiny, test, "mcq", tmp_path / "o", scorer=scorer,
                             options=mcq.Options(multi_threshold="calibrate", shots_from=str(dev)))
    rows = read_jsonl(tmp_path / "o" / "predictions.jsonl")
    multi = [r for r in rows if r["type"] == "multi"]
    assert multi and all(r["threshold"] == threshold for r in multi)
    assert all(r["pred"] == choose_several(r["scores"], r["threshold"]) for r in multi)  # recomputes from the file
    assert summary["results"]["model"]["by_type"]["multi"]["accuracy"] == 1.0
    with pytest.raises(DoctorKitError, match="calibrate needs --shots-from"):
        evaluate_model(*tiny, test, "mcq", tmp_path / "p", scorer=scorer, options=mcq.Options(multi_threshold="calibrate"))
