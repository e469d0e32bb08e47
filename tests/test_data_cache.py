"""Prepared-data cache: a second prepare with the same files, settings and tokenizer loads the same rows and says
so; a changed file or setting prepares afresh."""
import shutil

from doctorkit.builtin.tiny import build_tokenizer
from doctorkit.data import prepare
from doctorkit.recipe import load_recipe


def test_second_prepare_comes_from_the_cache_and_changes_invalidate_it(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCTORKIT_DATA_CACHE", str(tmp_path / "cache"))
    data = tmp_path / "d.jsonl"
    shutil.copy("data/sample_zh.jsonl", data)
    tokenizer = build_tokenizer()
    recipe = load_recipe("recipes/quickstart.yaml", [f"data.path={data}", "data.val_ratio=0.1"])
    first = prepare(recipe, tokenizer)
    second = prepare(recipe, tokenizer)
    assert first.report.cache == "" and second.report.cache.startswith(str(tmp_path / "cache"))
    assert "prepared-data cache" in second.report.summary()
    assert second.train["input_ids"] == first.train["input_ids"] and second.train["labels"] == first.train["labels"]
    assert second.eval["input_ids"] == first.eval["input_ids"]
    assert second.report.lengths == first.report.lengths and second.report.samples_used == first.report.samples_used

    shorter = load_recipe("recipes/quickstart.yaml", [f"data.path={data}", "data.val_ratio=0.1", "train.max_seq_len=64"])
    assert prepare(shorter, tokenizer).report.cache == ""             # another setting: prepared afresh
    with open(data, "a", encoding="utf-8") as f:                       # the file changed: prepared afresh
        f.write(data.read_text(encoding="utf-8").splitlines()[0] + "\n")
    changed = prepare(recipe, tokenizer)
    total = lambda p: p.report.samples_used + p.report.eval_samples  # noqa: E731
    assert changed.report.cache == "" and total(changed) == total(first) + 1


def test_two_processes_give_the_same_rows_and_report(tmp_path):
    tokenizer = build_tokenizer()
    one = load_recipe("recipes/quickstart.yaml", ["data.val_ratio=0.1", "data.num_proc=1", "train.max_seq_len=96",
                                                  "data.overlong=skip"])
    two = load_recipe("recipes/quickstart.yaml", ["data.val_ratio=0.1", "data.num_proc=2", "train.max_seq_len=96",
                                                  "data.overlong=skip"])
    a, b = prepare(one, tokenizer), prepare(two, tokenizer)
    assert a.report.samples_skipped.get("overlong", 0) > 0          # skips happen in the worker processes too
    assert b.train["input_ids"] == a.train["input_ids"] and b.train["labels"] == a.train["labels"]
    assert b.report.to_dict() == a.report.to_dict()
