"""CSV column recognition when data.columns is unset (issue 12): the CMD corpus (Chinese-medical-dialogue-data,
GB18030, `department,title,ask,answer`) and other common exports train without naming their columns."""
import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from doctorkit.data import read_conversations
from doctorkit.data.readers import csv_columns
from doctorkit.data.report import DataReport
from doctorkit.errors import DoctorKitError
from doctorkit.recipe import CsvColumns, load_recipe

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "recipes" / "quickstart.yaml"


def cmd_style_csv(path: Path, rows: int = 24) -> Path:
    """A CMD-shaped file written from our own sample dialogs: GB18030, department,title,ask,answer."""
    lines = (ROOT / "data" / "sample_zh.jsonl").read_text(encoding="utf-8").splitlines()[:rows]
    with open(path, "w", encoding="gb18030", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["department", "title", "ask", "answer"])
        for line in lines:
            user, assistant = (m["content"] for m in json.loads(line)["messages"][:2])
            writer.writerow(["内科", user[:12], user, assistant])
    return path


@pytest.mark.parametrize("header, user, assistant", [
    (["department", "title", "ask", "answer"], "ask", "answer"),               # CMD
    (["编号", "问题", "回答"], "问题", "回答"),
    (["问", "答"], "问", "答"),
    (["科室", "提问", "回复"], "提问", "回复"),
    ([" Question ", "ANSWER", "source"], " Question ", "ANSWER"),              # case and spaces
    (["Query", "Response"], "Query", "Response"),
    (["instruction", "output"], "instruction", "output"),
    (["prompt", "completion"], "prompt", "completion"),
    (["input", "output"], "input", "output"),
])
def test_common_headers_are_recognized(header, user, assistant):
    chosen, how = csv_columns(Path("f.csv"), header, CsvColumns())
    assert chosen == {"user": user, "assistant": assistant} and how == "recognized from the header"


def test_a_named_column_wins_and_the_other_side_is_still_recognized():
    chosen, how = csv_columns(Path("f.csv"), ["title", "ask", "answer"], CsvColumns(user="title"))
    assert chosen == {"user": "title", "assistant": "answer"} and how.startswith("data.columns, assistant")


@pytest.mark.parametrize("header, words", [
    (["instruction", "input", "output"], "2 columns could hold the patient's message: instruction, input "
                                         "(columns: instruction, input, output); name it with "
                                         "--set data.columns.user=instruction"),
    (["department", "text", "answer"], "no column looks like the patient's message (columns: department, text, "
                                       "answer); name it with --set data.columns.user=COLUMN"),
    (["question", "answer", "reply"], "2 columns could hold the doctor's reply: answer, reply"),
])
def test_ambiguous_or_missing_side_is_one_line_naming_the_fix(header, words):
    with pytest.raises(DoctorKitError) as err:
        csv_columns(Path("f.csv"), header, CsvColumns())
    assert words in str(err.value) and "\n" not in str(err.value) and str(err.value).startswith("f.csv:1: ")


def test_report_says_which_columns_were_used(tmp_path):
    path = cmd_style_csv(tmp_path / "cmd.csv", rows=5)
    data = load_recipe(QUICKSTART, [f"data.path={path}"]).data
    report = DataReport()
    convs = read_conversations(data, data.path, report)
    assert len(convs) == 5 and report.csv_columns == [f"{path}: user=ask, assistant=answer (recognized from the header)"]
    first = json.loads((ROOT / "data" / "sample_zh.jsonl").read_text(encoding="utf-8").splitlines()[0])["messages"]
    assert convs[0] == first[:2]                     # GB18030 decoded, the right columns on the right sides


def test_translate_reads_the_same_columns(tmp_path, capsys):
    from translate.recipe import SourceData
    from translate.records import read_records

    path = cmd_style_csv(tmp_path / "cmd.csv", rows=3)
    records = read_records(SourceData(path=str(path)), path)
    assert [m["role"] for m in records[0].messages] == ["user", "assistant"] and len(records) == 3
    assert "user=ask, assistant=answer (recognized from the header)" in capsys.readouterr().out
    with pytest.raises(DoctorKitError, match="--set data.columns.user=instruction"):
        bad = tmp_path / "alpaca.csv"
        bad.write_text("instruction,input,output\nA,B,C\n", encoding="utf-8")
        read_records(SourceData(path=str(bad)), bad)


@pytest.mark.slow
def test_cmd_style_gb18030_csv_trains_with_only_data_path(tmp_path):
    """The command of the issue: the quickstart recipe, `--set data.path=FILE.csv` and nothing else (output_dir
    and a short schedule only keep the test's run out of runs/ and short)."""
    path = cmd_style_csv(tmp_path / "cmd.csv")
    run_dir = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "doctorkit.train", str(QUICKSTART), "--set", f"data.path={path}",
                           "--set", f"output_dir={run_dir}", "--set", "train.max_steps=3"],
                          capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"data: CSV columns {path}: user=ask, assistant=answer (recognized from the header)" in proc.stdout
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["samples_used"] + metrics["eval_samples"] == 24 and metrics["eval_samples"] >= 1   # every row used
