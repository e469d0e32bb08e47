"""Reading what users bring: each format, encodings, bad lines as file:line, every skip reason counted."""
import csv
import json
import time

import pytest

from doctorkit.builtin.tiny import build_tokenizer
from doctorkit.data import DataReport, prepare, read_conversations
from doctorkit.errors import DoctorKitError
from doctorkit.recipe import Recipe

Q, A = "医生您好，我最近一周头痛，该怎么办？", "注意多喝温水、好好休息。"
GOOD = {"messages": [{"role": "user", "content": Q}, {"role": "assistant", "content": A}]}
EXPECTED = [{"role": "user", "content": Q}, {"role": "assistant", "content": A}]


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer("chatml")


def recipe(**data):
    max_seq_len = data.pop("max_seq_len", 256)
    return Recipe.model_validate({"data": data, "train": {"max_seq_len": max_seq_len}})


def write_jsonl(path, records):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n"
                            for r in records), encoding="utf-8")
    return str(path)


def test_messages_sharegpt_alpaca_detected_automatically(tmp_path):
    messages = write_jsonl(tmp_path / "m.jsonl", [GOOD])
    sharegpt = write_jsonl(tmp_path / "s.jsonl", [{"conversations": [{"from": "human", "value": Q},
                                                                     {"from": "gpt", "value": A}]}])
    alpaca = tmp_path / "a.json"  # a JSON list, with history and a system prompt
    alpaca.write_text(json.dumps([{"instruction": "第二个问题", "input": "补充", "output": "第二个回答",
                                   "system": "你是医生", "history": [[Q, A]]}], ensure_ascii=False, indent=2),
                      encoding="utf-8")
    convs = read_conversations(recipe().data, [messages, sharegpt, str(alpaca)])
    assert convs[0] == EXPECTED and convs[1] == EXPECTED
    assert convs[2] == [{"role": "system", "content": "你是医生"}, *EXPECTED,
                        {"role": "user", "content": "第二个问题\n补充"}, {"role": "assistant", "content": "第二个回答"}]


@pytest.mark.parametrize("encoding", ["auto", "gb18030"])
def test_gb18030_csv_with_column_mapping(tmp_path, encoding):
    path = tmp_path / "export.csv"
    with open(path, "w", encoding="gb18030", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["编号", "问题", "回答"])
        writer.writerows([[i, f"{Q}（第{i}例）", f"{A}多喝水，腹泻注意补液。"] for i in range(5)])
    data = recipe(path=str(path), encoding=encoding, columns={"user": "问题", "assistant": "回答", "id": "编号"}).data
    convs = read_conversations(data, data.path)
    assert len(convs) == 5
    assert convs[3] == [{"role": "user", "content": f"{Q}（第3例）"},
                        {"role": "assistant", "content": f"{A}多喝水，腹泻注意补液。"}]
    with pytest.raises(DoctorKitError, match=r"export\.csv: not valid utf-8"):
        read_conversations(recipe(path=str(path), encoding="utf-8").data, str(path))
    with pytest.raises(DoctorKitError, match="no column user='question'.*its columns are: 编号, 问题, 回答"):
        read_conversations(recipe(path=str(path), columns={"user": "question"}).data, str(path))
    assert read_conversations(recipe(path=str(path)).data, str(path)) == convs   # unset: 问题/回答 recognized


def test_malformed_line_is_reported_as_file_line_and_counted(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [GOOD, '{"messages": [', {"text": "no known fields"}, GOOD])
    report = DataReport()
    convs = read_conversations(recipe(format="messages").data, path, report)
    assert len(convs) == 2 and report.samples_skipped == {"malformed": 2}
    assert report.problems[0].startswith(f"{path}:2: malformed JSON")
    assert report.problems[1] == f"{path}:3: missing 'messages' list (messages format)"
    with pytest.raises(DoctorKitError) as err:
        read_conversations(recipe(on_error="fail").data, path)
    assert str(err.value).startswith(f"{path}:2: malformed JSON") and "\n" not in str(err.value)


def test_every_skip_reason_is_counted(tmp_path, tokenizer):
    user, assistant = (lambda t: {"role": "user", "content": t}), (lambda t: {"role": "assistant", "content": t})
    records = [
        GOOD,
        {"messages": []},                                                  # empty
        {"messages": [{"role": "system", "content": "只有系统提示"}]},        # empty
        {"messages": [user(Q), assistant("  ")]},                          # empty_message
        {"messages": [user(Q), user(Q), assistant(A)]},                    # not_alternating
        {"messages": [assistant(A), user(Q), assistant(A)]},               # not_alternating
        {"messages": [user(Q), assistant(A), user(Q)]},                    # ends_on_user
        {"messages": [user(Q * 40), assistant(A)]},                        # truncated_away (question > 256)
        "not json",                                                        # malformed
    ]
    path = write_jsonl(tmp_path / "d.jsonl", records)
    report = prepare(recipe(path=path), tokenizer).report
    assert report.samples_used == 1
    assert report.samples_skipped == {"empty": 2, "empty_message": 1, "not_alternating": 2, "ends_on_user": 1,
                                      "truncated_away": 1, "malformed": 1}
    report = prepare(recipe(path=path, overlong="skip"), tokenizer).report
    assert report.samples_skipped["overlong"] == 1 and "truncated_away" not in report.samples_skipped


def test_nothing_usable_and_missing_file_are_one_line_errors(tmp_path, tokenizer):
    path = write_jsonl(tmp_path / "bad.jsonl", ["{", {"messages": []}])
    with pytest.raises(DoctorKitError, match=r"no usable training conversation \(empty 1, malformed 1\)") as err:
        prepare(recipe(path=path), tokenizer)
    assert "\n" not in str(err.value)
    with pytest.raises(DoctorKitError, match="nope.jsonl: data file not found"):
        prepare(recipe(path=str(tmp_path / "nope.jsonl")), tokenizer)


def test_30000_character_conversation_is_truncated_counted_and_fast(tmp_path, tokenizer):
    turns = []
    while sum(len(m["content"]) for m in turns) < 30_000:
        turns += [{"role": "user", "content": Q * 5}, {"role": "assistant", "content": A * 20}]
    path = write_jsonl(tmp_path / "long.jsonl", [{"messages": turns}, GOOD])
    start = time.perf_counter()
    prepared = prepare(recipe(path=path, max_seq_len=1024), tokenizer)
    assert time.perf_counter() - start < 5
    assert prepared.report.truncated == 1 and prepared.report.samples_used == 2
    assert sorted(prepared.report.lengths)[-1] == 1024
    assert len(prepared.train[0]["input_ids"]) == 1024 == len(prepared.train[0]["labels"])


def test_split_by_ratio_is_deterministic_and_by_file(tmp_path, tokenizer):
    records = [{"messages": [{"role": "user", "content": f"{Q}{i}"}, {"role": "assistant", "content": A}]}
               for i in range(50)]
    path = write_jsonl(tmp_path / "d.jsonl", records)
    first = prepare(recipe(path=path, val_ratio=0.2), tokenizer)
    again = prepare(recipe(path=path, val_ratio=0.2), tokenizer)
    assert (first.report.samples_used, first.report.eval_samples) == (40, 10)
    assert first.eval["input_ids"] == again.eval["input_ids"]
    other_seed = prepare(Recipe.model_validate({"seed": 7, "data": {"path": path, "val_ratio": 0.2}}), tokenizer)
    assert other_seed.eval["input_ids"] != first.eval["input_ids"]
    assert not set(map(tuple, first.eval["input_ids"])) & set(map(tuple, first.train["input_ids"]))
    val = write_jsonl(tmp_path / "val.jsonl", records[:3])
    by_file = prepare(recipe(path=path, val_path=val, val_ratio=0.5), tokenizer)
    assert (by_file.report.samples_used, by_file.report.eval_samples) == (50, 3)
    assert by_file.report.supervised_tokens == sum(sum(x != -100 for x in row) for row in by_file.train["labels"])
    assert prepare(recipe(path=path, max_samples=7), tokenizer).report.samples_used == 7


def test_system_prompt_added_only_where_missing(tmp_path):
    own = {"messages": [{"role": "system", "content": "自带"}, *EXPECTED]}
    path = write_jsonl(tmp_path / "d.jsonl", [GOOD, own])
    convs = read_conversations(recipe(system_prompt="你是医生").data, path)
    assert convs[0][0] == {"role": "system", "content": "你是医生"} and convs[1][0]["content"] == "自带"
