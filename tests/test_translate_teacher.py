"""The teacher step against a real HTTP server on 127.0.0.1: faults are retried with backoff, nothing is
lost, nothing is paid twice (the server counts every billed reply), a killed seed resumes for free."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from doctorkit.errors import DoctorKitError
from doctorkit.recipe import load_recipe
from translate.recipe import TranslateRecipe, WorkFiles
from translate.records import read_records
from translate.seed import seed, segments_of
from translate_fixtures import english_records, teacher_server, write_jsonl, write_recipe  # noqa: F401


def make(tmp_path, server, n=30, **sections):
    data = tmp_path / "en.jsonl"
    write_jsonl(data, english_records(n))
    path = write_recipe(tmp_path, server.base_url, data, **sections)
    return path, load_recipe(path, schema=TranslateRecipe)


def expected_segments(recipe) -> set[str]:
    records = read_records(recipe.data, recipe.data.path)
    return {text for r in records for _, _, text in segments_of(r, recipe.segment.max_chars)}


def read_pairs(recipe) -> list[dict]:
    return [json.loads(line) for line in WorkFiles(recipe).pairs.read_text(encoding="utf-8").splitlines()]


@pytest.mark.parametrize("fault", ["429", "500", "timeout", "garbage", "empty", "drop"])
def test_fault_is_retried_nothing_lost_nothing_paid_twice(tmp_path, teacher_server, fault):
    path, recipe = make(tmp_path, teacher_server, n=8, seed_set={"n": 8}, teacher={"concurrency": 1})
    teacher_server.faults = [fault, fault]   # the first two requests fail, then all is well
    report = seed(recipe)
    texts = expected_segments(recipe)
    pairs = read_pairs(recipe)
    assert {p["en"] for p in pairs} == texts and all(p["zh"] for p in pairs)
    assert report["retries"] == 2 and report["teacher_calls"] == len(texts)
    assert teacher_server.requests == len(texts) + 2
    assert set(teacher_server.billed) == texts and max(teacher_server.billed.values()) == 1

    again = seed(recipe)   # a rerun is free: served from the cache
    assert again["teacher_calls"] == 0 and again["cached"] == len(texts) and again["paid_this_run_usd"] == 0
    assert teacher_server.requests == len(texts) + 2
    assert read_pairs(recipe) and sorted(map(json.dumps, read_pairs(recipe))) == sorted(map(json.dumps, pairs))
    assert again["cost_usd"] == pytest.approx(report["cost_usd"]) and report["cost_usd"] > 0


def test_gives_up_after_retries_with_one_line(tmp_path, teacher_server):
    path, recipe = make(tmp_path, teacher_server, n=2, seed_set={"n": 2}, teacher={"concurrency": 1, "max_retries": 2})
    teacher_server.faults = ["500"] * 50
    with pytest.raises(DoctorKitError, match=r"gave up after 3 attempts, last: HTTP 500"):
        seed(recipe)


def test_unreachable_base_url_fails_fast(tmp_path, teacher_server):
    path, recipe = make(tmp_path, teacher_server, n=3, seed_set={"n": 3},
                        teacher={"base_url": "http://127.0.0.1:9/v1", "max_retries": 2})
    started = time.time()
    with pytest.raises(DoctorKitError) as err:
        seed(recipe)
    assert "127.0.0.1:9" in str(err.value) and "connection failed" in str(err.value) and "\n" not in str(err.value)
    assert time.time() - started < 10


def test_wrong_endpoint_is_not_retried(tmp_path, teacher_server):
    path, recipe = make(tmp_path, teacher_server, n=2, seed_set={"n": 2},
                        teacher={"base_url": teacher_server.base_url + "/nothing-here", "concurrency": 1})
    with pytest.raises(DoctorKitError, match="HTTP 404"):
        seed(recipe)
    assert teacher_server.requests <= 2   # no retries; the worker may have begun the next segment


def test_missing_api_key_is_one_line(tmp_path, teacher_server, monkeypatch, capsys):
    path, _ = make(tmp_path, teacher_server, n=2)
    monkeypatch.delenv("DOCTORKIT_TEST_KEY")
    from translate import run
    with pytest.raises(SystemExit) as exit_:
        run(["seed", path])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1 and "DOCTORKIT_TEST_KEY is not set" in err
    assert teacher_server.requests == 0


def test_killed_seed_resumes_without_paying_twice(tmp_path, teacher_server):
    path, recipe = make(tmp_path, teacher_server, n=60, seed_set={"n": 60}, teacher={"concurrency": 2})
    teacher_server.delay_s = 0.03
    env = {**os.environ, "DOCTORKIT_TEST_KEY": "sk-test"}
    proc = subprocess.Popen([sys.executable, "-m", "translate", "seed", path], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and sum(teacher_server.billed.values()) < 10:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    paid_before_kill = sum(teacher_server.billed.values())
    texts = expected_segments(recipe)
    assert 10 <= paid_before_kill < len(texts)          # really killed mid-way

    teacher_server.delay_s = 0.0
    report = seed(recipe)
    assert report["cached"] >= paid_before_kill - 2       # at most the replies in flight were lost
    assert {p["en"] for p in read_pairs(recipe)} == texts
    assert set(teacher_server.billed) == texts
    # a reply sent while the process died may be billed once more; never more than that
    assert sum(teacher_server.billed.values()) - len(texts) <= 2
