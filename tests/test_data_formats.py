"""A data format registered from this file ({"q", "a"} JSON Lines) is read by train, cost, translate, deid and
evaluate with no kit file edited: a format is one registered object (doctorkit/data/formats.py). The list of
format names lives there alone. README "Extending DoctorKit" points here."""
import json
import re
from pathlib import Path

import pytest

from doctorkit.data import formats, prepare, read_conversations
from doctorkit.data.readers import BadRecord
from doctorkit.errors import DoctorKitError
from doctorkit.recipe import DataConfig, Recipe, load_recipe
from doctorkit.builtin.tiny import build_tokenizer

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "recipes" / "quickstart.yaml"
ROWS = [{"id": "r1", "q": "医生您好，我头痛三天了", "a": "多休息，按时吃饭。", "lang": "zh"},
        {"id": "r2", "q": "咳嗽怎么办", "a": "多喝温水，观察体温。", "lang": "zh"},
        {"id": "r3", "q": "只有问题"},                           # no answer: one malformed record
        {"id": "r4", "q": "失眠", "a": "睡前少看手机。", "lang": "zh"}]


class QuestionAnswer:
    """One question and its answer per record."""
    KEYS = ("q", "a")                 # translate copies the other keys (here: lang) to its output

    def detect(self, record):
        return "q" in record

    def to_messages(self, record):
        for key in ("q", "a"):
            if not isinstance(record.get(key), str):
                raise BadRecord(f"missing '{key}' text (qa format)")
        return [{"role": "user", "content": record["q"]}, {"role": "assistant", "content": record["a"]}]


@pytest.fixture
def qa():
    formats.register("qa", QuestionAnswer())
    yield "qa"
    formats.unregister("qa")


@pytest.fixture
def qa_file(tmp_path):
    path = tmp_path / "qa.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in ROWS), encoding="utf-8")
    return path


def expected(row):
    return [{"role": "user", "content": row["q"]}, {"role": "assistant", "content": row["a"]}]


@pytest.mark.parametrize("fmt", ["qa", "auto"])
def test_train_reads_it_by_name_and_detected(qa, qa_file, fmt):
    recipe = load_recipe(QUICKSTART, [f"data.path={qa_file}", f"data.format={fmt}", "data.val_ratio=0"])
    from doctorkit.data import DataReport

    report = DataReport()
    conversations = read_conversations(recipe.data, recipe.data.path, report)
    assert conversations == [expected(ROWS[i]) for i in (0, 1, 3)]
    assert report.problems == [f"{qa_file}:3: missing 'a' text (qa format)"]
    prepared = prepare(recipe, build_tokenizer("chatml"))
    assert prepared.report.samples_used == 3


def test_cost_counts_its_conversations(qa, qa_file):
    from doctorkit.cost.tokens import count_tokens, data_tokens, read_samples

    recipe = load_recipe(QUICKSTART, [f"data.path={qa_file}", "data.format=qa", "data.val_ratio=0",
                                      "train.max_seq_len=512"])
    samples = read_samples(recipe)
    assert samples == [[ROWS[i]["q"], ROWS[i]["a"]] for i in (0, 1, 3)]
    exact = data_tokens(recipe)       # builtin:tiny loads offline: counted through doctorkit.data.prepare
    assert "doctorkit.data.prepare" in exact.how and len(exact.lengths) == 3
    assert len(count_tokens(samples).lengths) == 3


def test_translate_reads_it_and_keeps_the_other_keys(qa, qa_file):
    from translate.recipe import SourceData
    from translate.records import read_records

    records = read_records(SourceData(path=str(qa_file), format="qa"), qa_file)
    assert [r.id for r in records] == ["r1", "r2", "r3", "r4"]
    assert records[0].messages == expected(ROWS[0]) and records[0].extra == {"lang": "zh"}
    assert records[2].problem == "missing 'a' text (qa format)" and records[3].problem is None
    detected = read_records(SourceData(path=str(qa_file)), qa_file)    # format auto
    assert [r.messages for r in detected] == [r.messages for r in records]


def test_deid_and_evaluate_read_it(qa, qa_file, tmp_path):
    from doctorkit.deid.command import main as deid_main
    from doctorkit.evaluate.tasks import dialog

    out = tmp_path / "clean.jsonl"
    assert deid_main([str(qa_file), "--out", str(out), "--format", "qa"]) == 0
    written = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [w["id"] for w in written] == ["r1", "r2", "r4"] and written[1]["messages"] == expected(ROWS[1])
    loaded = dialog.load(qa_file)
    assert [i["reference"] for i in loaded.items] == [ROWS[i]["a"] for i in (0, 1, 3)]
    assert loaded.skipped == [f"{qa_file}:3: missing 'a' text (qa format)"]


def test_recipe_format_choices_are_the_registry(qa, tmp_path):
    from translate.recipe import SourceData

    for name in formats.choices():
        assert DataConfig(format=name).format == name and SourceData(format=name).format == name
    assert "qa" in formats.choices()
    formats.unregister("qa")
    try:
        with pytest.raises(DoctorKitError) as err:
            load_recipe(QUICKSTART, ["data.format=qa"])
        message = str(err.value)
        assert "\n" not in message and "'data.format'" in message
        assert f"available: {', '.join(formats.choices())}" in message and "qa" not in formats.choices()
    finally:
        formats.register("qa", QuestionAnswer())   # the fixture unregisters it


def test_format_names_are_listed_in_one_place():
    """No kit file but doctorkit/data/formats.py writes a list holding two or more built-in format names
    (a Literal, argparse choices, a set): each would drift from the registry."""
    builtin = [name for name in formats.names()]
    assert builtin == ["messages", "sharegpt", "alpaca", "csv"]
    listed = []
    for folder in ("doctorkit", "translate", "app", "bench"):
        for path in (ROOT / folder).rglob("*.py"):
            if path == ROOT / "doctorkit" / "data" / "formats.py":
                continue
            for group in re.findall(r"[\[({][^\[\](){}]*[\])}]", path.read_text(encoding="utf-8")):
                if sum(f'"{name}"' in group or f"'{name}'" in group for name in builtin) >= 2:
                    listed.append(f"{path.relative_to(ROOT)}: {group[:60]}")
    assert not listed, listed


def test_auto_names_the_registered_formats_when_nothing_fits(qa, tmp_path):
    path = tmp_path / "odd.jsonl"
    path.write_text('{"text": "hello"}\n', encoding="utf-8")
    (read,) = formats.read_file(path)
    assert isinstance(read.messages, formats.UnknownFormat) and read.format is None
    assert str(read.messages) == ("cannot detect the format (keys: text; known: messages, sharegpt, alpaca, qa); "
                                  "set data.format")
    with pytest.raises(DoctorKitError, match="'auto' is not a format name"):
        formats.register("auto", QuestionAnswer())


def test_knowledge_base_skips_a_line_with_undecodable_bytes(tmp_path):
    """The knowledge base reads through the one encoding detector; a damaged line is skipped and named, as in
    training data, instead of carrying lone surrogates into prompts."""
    from doctorkit.knowledge.base import KnowledgeBase

    lines = [json.dumps({"name": f"病{i}", "概述": "一种测试用的病。"}, ensure_ascii=False).encode() for i in range(50)]
    lines[5] = lines[5].replace("测试".encode(), b"\xff\xfe")
    path = tmp_path / "kb.jsonl"
    path.write_bytes(b"\n".join(lines))
    kb = KnowledgeBase.load(path)
    assert len(kb.entries) == 49 and "病5" not in [e.name for e in kb.entries]
    assert kb.skipped == [f"{path}:6: undecodable byte 0xff (not text in the file's encoding, data.encoding)"]
