"""An evaluation task registered from this file (reply length against a limit, the limit its own option) runs
through the evaluate command, its report, and a recipe's eval.* keys, with no kit file edited: a task is one
registered object (doctorkit.evaluate.tasks). README "Extending DoctorKit" points here."""
import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from doctorkit.errors import DoctorKitError
from doctorkit.evaluate import evaluate_after_training, main, register, run, unregister
from doctorkit.evaluate.batching import generate_replies
from doctorkit.evaluate.records import load_items
from doctorkit.evaluate.tasks import EvalOptions, option
from doctorkit.recipe import load_recipe
from evaluate_helpers import make_lora_run, read_jsonl, write_jsonl

ROOT = Path(__file__).resolve().parent.parent
PROMPTS = ["头痛怎么办？", "医生，我咳嗽一周了。", "发烧三十八度要吃药吗？", "胃疼", "失眠多梦"]


@dataclass
class LengthOptions(EvalOptions):
    max_chars: int = option(40, "--max-chars", "a reply longer than this many characters is too long")


class ReplyLength:
    """Everything the kit asks of a task; what it leaves out (DEFAULT_DATA, chart, ...) is the default."""
    SUMMARY = "share of replies within a length limit"
    HEADLINE = ["within_limit", "mean_chars"]
    Options = LengthOptions

    def load(self, path, max_samples=None, options=None):
        return load_items(path, max_samples, lambda r: {"prompt": [{"role": "user", "content": r["prompt"]}]},
                          lambda r: isinstance(r, dict) and "prompt" in r, "prompt records")

    def predict(self, model, tokenizer, items, options, scorer=None, desc="length"):
        replies = generate_replies(model, tokenizer, [item["prompt"] for item in items], options.max_new_tokens,
                                   options.batch_size, options.repetition_penalty, desc=desc)
        return [{"id": item["id"], "reply": reply, "chars": len(reply), "limit": options.max_chars}
                for item, reply in zip(items, replies)]

    def score(self, records):
        within = [r["chars"] <= r["limit"] for r in records]
        return {"within_limit": sum(within) / len(within), "mean_chars": sum(r["chars"] for r in records) / len(records)}

    def headline(self, metrics):
        return [("within_limit", f"{100 * metrics['within_limit']:.1f}%"), ("mean_chars", f"{metrics['mean_chars']:.1f}")]

    def details(self, results):
        return ["within_limit: replies no longer than the option max_chars count as within the limit"]


@pytest.fixture
def length_task():
    register("replylen", ReplyLength())
    yield "replylen"
    unregister("replylen")


@pytest.fixture
def prompts(tmp_path):
    return write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": p} for p in PROMPTS])


def test_registered_task_runs_through_the_command_with_its_option(length_task, prompts, tmp_path, capsys):
    base = ["builtin:tiny", "--data", str(prompts), "--task", length_task, "--max-new-tokens", "12"]
    for argv, limit in (([*base, "--option", "max_chars=3"], 3), ([*base, "--max-chars", "100000"], 100000)):
        out = tmp_path / f"out-{limit}"
        assert main([*argv, "--out", str(out), "--json"]) == 0
        summary = json.loads(capsys.readouterr().out)
        rows = read_jsonl(out / "predictions.jsonl")
        assert [r["limit"] for r in rows] == [limit] * len(PROMPTS)   # the option reached predict, as an int
        assert summary["options"]["max_chars"] == limit and summary["task"] == length_task
        assert summary["results"]["model"]["within_limit"] == sum(len(r["reply"]) <= limit for r in rows) / len(rows)
        assert json.loads((out / "metrics.json").read_text(encoding="utf-8")) == summary
        assert (out / "eval.png").stat().st_size > 0
    assert summary["results"]["model"]["within_limit"] == 1.0
    assert any(r["chars"] > 3 for r in read_jsonl(tmp_path / "out-3" / "predictions.jsonl"))  # the limit bit there

    assert main([*base, "--out", str(tmp_path / "table")]) == 0   # the report asks the task for its rows
    table = capsys.readouterr().out
    within = json.loads((tmp_path / "table" / "metrics.json").read_text(encoding="utf-8"))["results"]["model"]["within_limit"]
    assert f"{'within_limit':<22}{f'{100 * within:.1f}%':>26}" in table.splitlines()
    assert "count as within the limit" in table


@pytest.mark.parametrize("args, message", [
    (["--option", "nope=1"], "task replylen has no option 'nope' (its options: max_chars)"),
    (["--option", "max_chars=many"], "task replylen: option 'max_chars'"),
    (["--shots", "2"], "task replylen has no option 'shots' (its options: max_chars)"),   # an mcq flag
])
def test_wrong_option_is_one_line_naming_the_options(length_task, prompts, tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as code:
        run(["builtin:tiny", "--data", str(prompts), "--task", length_task, "--out", str(tmp_path / "o"), *args])
    err = capsys.readouterr().err.strip()
    assert code.value.code == 2 and message in err and "\n" not in err


def test_recipe_eval_options_reach_the_registered_task(length_task, prompts, tmp_path):
    run_dir = make_lora_run(tmp_path / "run")
    overrides = [f"eval.task={length_task}", f"eval.data={prompts}", "eval.options.max_chars=7", "eval.base=true",
                 "eval.max_new_tokens=6"]
    summary = evaluate_after_training(run_dir, load_recipe(run_dir / "recipe.yaml", overrides))
    rows = read_jsonl(Path(summary["out_dir"]) / "predictions.jsonl")
    assert {r["limit"] for r in rows} == {7} and summary["out_dir"] == str(run_dir / "eval" / "replylen-prompts")
    recorded = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))["eval"]
    assert recorded["results"] == summary["results"] and set(recorded["difference"]) == set(ReplyLength.HEADLINE)

    from doctorkit.evaluate import check_eval_config
    bad = load_recipe(run_dir / "recipe.yaml", [*overrides, "eval.options.max_len=7"])
    with pytest.raises(DoctorKitError, match=r"task replylen has no option 'max_len' \(its options: max_chars\)"):
        check_eval_config(bad)


def test_evaluation_commands_ask_the_task_instead_of_naming_one():
    """runner, report and command branch on no task name and print no task's metric by name (the task says)."""
    needles = ("task ==", "task !=", '== "mcq"', '== "dialog"', "bleu", "per_subject", "accuracy")
    offenders = [f"{name}:{n}" for name in ("runner.py", "report.py", "command.py")
                 for n, line in enumerate((ROOT / "doctorkit" / "evaluate" / name).read_text(encoding="utf-8").splitlines(), 1)
                 if any(needle in line.lower() for needle in needles)]
    assert offenders == []
