"""Issue 19's battery: bad inputs across every command, each answered with ONE error line and exit 2 —
never a traceback, never a wrong success (exit 0). Commands run in process (their `run(argv)`, as the
console script calls them) so the battery stays fast; every case errors out before a model would load.

A case is (command module, argv, text the error line must contain). Fixtures build the bad run
directories and exported folders the cases point at ({run}, {out}, ... are filled in per test).
"""
from __future__ import annotations

import importlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
QUICK = str(ROOT / "recipes" / "quickstart.yaml")
TRANSLATE = str(ROOT / "recipes" / "translate_quickstart.yaml")


def make_run(run_dir: Path, method: str = "lora") -> Path:
    """A finished-looking run directory (builtin:tiny + an untrained LoRA adapter), no training needed."""
    from doctorkit.methods import get_method
    from doctorkit.recipe import Recipe, save_recipe
    from doctorkit.builtin.tiny import build_tiny

    recipe = Recipe(output_dir=str(run_dir))
    model, tokenizer = build_tiny()
    get_method("lora").wrap(model, recipe).save_pretrained(run_dir / "adapter")
    tokenizer.save_pretrained(run_dir / "tokenizer")
    save_recipe(recipe.model_copy(update={"method": method}), run_dir / "recipe.yaml")
    return run_dir


@pytest.fixture(scope="module")
def places(tmp_path_factory):
    """Every bad artifact the cases name, built once."""
    from doctorkit.builtin.tiny import build_tiny

    root = tmp_path_factory.mktemp("bad")
    good = make_run(root / "good")
    for name in ("empty_adapter", "cut_adapter", "bad_config", "says_ptuning"):
        make_run(root / name, method="ptuning" if name == "says_ptuning" else "lora")
    weights = "adapter/adapter_model.safetensors"
    (root / "empty_adapter" / weights).write_bytes(b"")
    data = (root / "cut_adapter" / weights).read_bytes()
    (root / "cut_adapter" / weights).write_bytes(data[: len(data) // 2])
    (root / "bad_config" / "adapter" / "adapter_config.json").write_text('{"r": 8,', encoding="utf-8")
    model, tokenizer = build_tiny()
    for name in ("export_empty_config", "export_empty_tokenizer", "export_cut_weights"):
        model.save_pretrained(root / name)
        tokenizer.save_pretrained(root / name)
    (root / "export_empty_config" / "config.json").write_bytes(b"")
    (root / "export_empty_tokenizer" / "tokenizer_config.json").write_bytes(b"")
    cut = root / "export_cut_weights" / "model.safetensors"
    cut.write_bytes(cut.read_bytes()[:1000])
    (root / "a_file").write_text("not a folder\n")
    (root / "full").mkdir()
    (root / "full" / "x").write_text("taken\n")
    (root / "empty.yaml").write_text("", encoding="utf-8")
    bad_byte = root / "bad_byte.jsonl"
    bad_byte.write_bytes(b'{"messages": [{"role": "user", "content": "\xff"}, {"role": "assistant", "content": "x"}]}\n'
                         + '{"messages": [{"role": "user", "content": "头痛"}, {"role": "assistant", "content": "休息"}]}\n'
                         .encode() * 3)
    (root / "eval.jsonl").write_text(json.dumps({"messages": [{"role": "user", "content": "头痛"},
                                                              {"role": "assistant", "content": "休息"}]},
                                                ensure_ascii=False) + "\n", encoding="utf-8")
    # translate: a seed that stopped at 1 of 3 planned segments
    work = root / "translate"
    work.mkdir()
    (work / "pairs.jsonl").write_text(json.dumps({"en": "a", "zh": "甲"}) + "\n", encoding="utf-8")
    (work / "seed_report.json").write_text(json.dumps({"complete": False, "unique_segments": 3}))
    # a run whose training started with rank 16: --resume with another rank must say so
    started = root / "started" / "checkpoints"
    started.mkdir(parents=True)
    (started / "recipe.yaml").write_text((good / "recipe.yaml").read_text(encoding="utf-8").replace("r: 16", "r: 8"),
                                         encoding="utf-8")
    with socket.socket() as sock:  # a free port: the demo checks its port before the run directory
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return {"port": port, "root": root, "run": good, "file": root / "a_file", "full": root / "full",
            "eval": root / "eval.jsonl", "work": work, "started": root / "started", "bad_byte": bad_byte}


T = ["doctorkit.train", QUICK]
D = ["doctorkit.data"]
CASES = [
    # train: every number range-checked in the schema, outputs checked before anything loads
    (T + ["--set", "train.learning_rate=-1"], "learning_rate"),
    (T + ["--set", "train.batch_size=0"], "batch_size"),
    (T + ["--set", "train.warmup_ratio=-0.5"], "warmup_ratio"),
    (T + ["--set", "data.val_ratio=1.5"], "val_ratio"),
    (T + ["--set", "train.max_steps=0"], "max_steps"),
    (T + ["--set", "train.epochs=0"], "epochs"),
    (T + ["--set", "train.grad_accum=0"], "grad_accum"),
    (T + ["--set", "train.save_steps=0"], "save_steps"),
    (T + ["--set", "train.max_seq_len=0"], "max_seq_len"),
    (T + ["--set", "lora.r=0"], "lora.r"),
    (T + ["--set", "lora.dropout=1.5"], "lora.dropout"),
    (T + ["--set", "lora.adapter_dtype=bf17"], "lora.adapter_dtype"),
    (T + ["--set", "train.activation_offloading=sometimes"], "train.activation_offloading"),
    (T + ["--set", "data.max_samples=0"], "max_samples"),
    (T + ["--set", "seed=-1"], "seed"),
    (T + ["--set", "eval.max_new_tokens=0"], "max_new_tokens"),
    (T + ["--set", "method=dpo", "--set", "dpo.beta=0"], "dpo.beta"),
    (T + ["--set", "train.learnig_rate=1"], "did you mean"),
    (["doctorkit.train", "{root}/empty.yaml"], "empty"),
    (["doctorkit.train", "{root}/nope.yaml"], "not found"),
    (T + ["--set", "output_dir={file}"], "is a file"),
    (T + ["--set", "output_dir=/proc/doctorkit-run"], "not writable"),
    (T + ["--set", "output_dir={started}", "--resume"], "changed lora.r"),
    (T + ["--set", "output_dir={started}", "--resume", "--set", "method=ptuning", "--set", "lora=null"],
     "changed method"),
    (T + ["--set", "output_dir={run}"], "already holds a run"),
    # data
    (D + ["preview", QUICK, "--n", "-1"], "--n"),
    (D + ["preview", QUICK, "--n", "0"], "--n"),
    (D + ["stats", QUICK, "--set", "data.path={root}/missing.jsonl"], "not found"),
    (D + ["stats", QUICK, "--set", "data.val_ratio=1"], "val_ratio"),
    (D + ["stats", QUICK, "--set", "data.path={bad_byte}", "--set", "data.on_error=fail"], "bad_byte.jsonl:1"),
    (D + ["stats", QUICK, "--set", "data.encoding=klingon"], "unknown encoding"),
    (D + ["stats", QUICK, "--set", "data.knowledge_top_k=0"], "knowledge_top_k"),
    # chat: sampling flags and every kind of broken run directory or exported folder
    (["doctorkit.chat", "{run}", "--max-new-tokens", "0"], "--max-new-tokens"),
    (["doctorkit.chat", "{run}", "--temperature", "-1"], "--temperature"),
    (["doctorkit.chat", "{run}", "--top-p", "5"], "--top-p"),
    (["doctorkit.chat", "{run}", "--top-p", "0"], "--top-p"),
    (["doctorkit.chat", "{run}", "--repetition-penalty", "0"], "--repetition-penalty"),
    (["doctorkit.chat", "{run}", "--temperature", "nan"], "--temperature"),
    (["doctorkit.chat", "{root}/missing", "--prompt", "hi"], "not found"),
    (["doctorkit.chat", "{root}/empty_adapter", "--prompt", "hi"], "corrupt: "),
    (["doctorkit.chat", "{root}/cut_adapter", "--prompt", "hi"], "truncated"),
    (["doctorkit.chat", "{root}/bad_config", "--prompt", "hi"], "adapter_config.json is not valid JSON"),
    (["doctorkit.chat", "{root}/says_ptuning", "--prompt", "hi"], "says method 'ptuning'"),
    (["doctorkit.chat", "{root}/export_empty_config", "--prompt", "hi"], "config.json"),
    (["doctorkit.chat", "{root}/export_empty_tokenizer", "--prompt", "hi"], "tokenizer_config.json"),
    (["doctorkit.chat", "{root}/export_cut_weights", "--prompt", "hi"], "model.safetensors is truncated"),
    # evaluate
    (["doctorkit.evaluate", "{run}", "--data", "{eval}", "--task", "dialog", "--max-samples", "-3"], "--max-samples"),
    (["doctorkit.evaluate", "{run}", "--data", "{eval}", "--task", "dialog", "--max-samples", "0"], "--max-samples"),
    (["doctorkit.evaluate", "{run}", "--data", "{eval}", "--task", "dialog", "--batch-size", "0"], "--batch-size"),
    (["doctorkit.evaluate", "{run}", "--data", "{eval}", "--task", "dialog", "--max-new-tokens", "0"], "--max-new-tokens"),
    (["doctorkit.evaluate", "{run}", "--data", "{root}/missing.jsonl", "--task", "dialog"], "not found"),
    (["doctorkit.evaluate", "{root}/empty_adapter", "--data", "{eval}", "--task", "dialog"], "corrupt: "),
    (["doctorkit.evaluate", "{root}/says_ptuning", "--data", "{eval}", "--task", "dialog"], "says method"),
    (["doctorkit.evaluate", "{run}", "--data", "{eval}", "--task", "dialog", "--out", "{file}"], "is a file"),
    (["doctorkit.evaluate", "{run}", "--data", "{eval}", "--task", "dialog", "--out", "/proc/x"], "not writable"),
    # export
    (["doctorkit.export", "{run}", "--out", "{full}"], "not empty"),
    (["doctorkit.export", "{run}", "--out", "{file}"], "not empty"),
    (["doctorkit.export", "{run}", "--out", "/proc/doctorkit-export"], "not writable"),
    (["doctorkit.export", "{root}/cut_adapter", "--out", "{root}/o1"], "truncated"),
    (["doctorkit.export", "{root}/says_ptuning", "--out", "{root}/o2"], "says method 'ptuning'"),
    (["doctorkit.export", "{root}/missing", "--out", "{root}/o3"], "not found"),
    # cost
    (["doctorkit.cost", QUICK, "--results", "{root}/nonexistent"], "no such file"),
    (["doctorkit.cost", QUICK, "--samples", "0"], "--samples"),
    (["doctorkit.cost", QUICK, "--price-per-hour", "-1"], "--price-per-hour"),
    (["doctorkit.cost", QUICK, "--set", "train.batch_size=0"], "batch_size"),
    # knowledge
    (["doctorkit.knowledge", "search", "data/knowledge_zh.jsonl", "头痛", "-k", "0"], "-k"),
    (["doctorkit.knowledge", "search", "data/knowledge_zh.jsonl", "头痛", "--budget", "0"], "--budget"),
    # demo
    (["app", "{run}", "--port", "-1"], "--port"),
    (["app", "{run}", "--port", "70000"], "--port"),
    (["app", "{run}", "--max-input-chars", "0"], "--max-input-chars"),
    (["app", "{run}", "--max-seconds", "0"], "--max-seconds"),
    (["app", "{run}", "--queue-size", "0"], "--queue-size"),
    (["app", "{root}/empty_adapter", "--port", "{port}"], "corrupt: "),
    (["app", "{root}/says_ptuning", "--port", "{port}"], "says method"),
    # translate
    (["translate", "seed", TRANSLATE, "--set", "segment.max_chars=0"], "max_chars"),
    (["translate", "seed", TRANSLATE, "--set", "teacher.temperature=-1"], "temperature"),
    (["translate", "seed", TRANSLATE, "--set", "seed_set.n=0"], "seed_set.n"),
    (["translate", "distill", TRANSLATE, "--set", "student.holdout=1.5"], "holdout"),
    (["translate", "run", TRANSLATE, "--set", "run.shard_size=0"], "shard_size"),
    (["translate", "distill", TRANSLATE, "--set", "work_dir={work}"], "incomplete seed set: 1 of the 3 planned"),
    (["translate", "bogus", TRANSLATE], "invalid choice"),
    (["translate", "seed", TRANSLATE, "--set", "work_dir={file}"], "is a file"),
]


def run_command(argv: list[str], capsys) -> tuple[int, str]:
    module = importlib.import_module(argv[0])
    with pytest.raises(SystemExit) as stopped:
        module.run(argv[1:])
    return stopped.value.code, capsys.readouterr().err


@pytest.mark.parametrize("argv, expected", CASES, ids=[" ".join(c[0][:1] + c[0][2:])[:70] for c in CASES])
def test_bad_input_is_one_line_and_exit_2(argv, expected, places, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    argv = [part.format(**places) for part in argv]
    code, err = run_command(argv, capsys)
    assert code == 2, f"exit {code} (a wrong success if 0):\n{err}"
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1, err          # argparse adds its usage lines above; ours is the error line alone
    assert expected in errors[0], err


def test_battery_is_big_enough():
    assert len(CASES) >= 60
    assert {c[0][0] for c in CASES} >= {"doctorkit.train", "doctorkit.data", "doctorkit.chat", "doctorkit.evaluate",
                                        "doctorkit.export", "doctorkit.cost", "doctorkit.knowledge", "app", "translate"}


def test_unknown_command_is_refused(capsys):
    from doctorkit.cli import main
    with pytest.raises(SystemExit) as stopped:
        main(["trian"])
    assert stopped.value.code == 2 and "unknown command 'trian'" in capsys.readouterr().err


# --------------------------------------------------------------------- two runs into one folder ---

def test_second_run_into_a_locked_folder_is_refused_and_a_stale_lock_taken_over(tmp_path, capsys):
    from doctorkit.train import prepare_run_dir, release_run_dir

    run_dir = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from pathlib import Path; "
                               "from doctorkit.rundir import RunLock; RunLock(Path(sys.argv[1])); print('held', flush=True); "
                               "time.sleep(600)", str(run_dir)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert holder.stdout.readline().strip() == "held"
        code, err = run_command(["doctorkit.train", QUICK, "--set", f"output_dir={run_dir}"], capsys)
        assert code == 2 and f"PID {holder.pid}" in err and len(err.strip().splitlines()) == 1
    finally:
        holder.kill()
        holder.wait()
    assert (run_dir / ".lock").read_text().strip() == str(holder.pid)   # the killed holder's file stays: stale
    assert prepare_run_dir(run_dir, resume=True, overwrite=False) is None   # nothing to resume: step 0
    out = capsys.readouterr().out
    assert f"lock of PID {holder.pid}" in out and "starting from step 0" in out
    assert (run_dir / ".lock").read_text().strip() == str(os.getpid())
    release_run_dir(run_dir)
    assert not (run_dir / ".lock").exists()


# ------------------------------------------------------------- readers never load half-written files ---

def test_checkpoint_checks_and_resume_fallback(tmp_path, capsys):
    from doctorkit.rundir import resumable_checkpoint
    from doctorkit.train import prepare_run_dir, release_run_dir

    checkpoints = tmp_path / "run" / "checkpoints"
    for step in (2, 4, 6):
        folder = checkpoints / f"checkpoint-{step}"
        folder.mkdir(parents=True)
        (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    (checkpoints / "checkpoint-6" / "trainer_state.json").write_text('{"global_step": 6, "log_hi')   # cut off
    (checkpoints / "checkpoint-8").mkdir()                                                           # empty
    last, skipped = resumable_checkpoint(checkpoints)
    assert last.endswith("checkpoint-4") and [p.name for p, _ in skipped] == ["checkpoint-8", "checkpoint-6"]
    assert prepare_run_dir(tmp_path / "run", resume=True, overwrite=False).endswith("checkpoint-4")
    release_run_dir(tmp_path / "run")
    out = capsys.readouterr().out
    assert "skipping incomplete checkpoint" in out and "resuming from" in out
    assert sorted(p.name for p in checkpoints.iterdir()) == ["checkpoint-2", "checkpoint-4"]   # cut-off ones removed


def test_atomic_folder_leaves_nothing_half_written(tmp_path):
    from doctorkit import atomic

    final = tmp_path / "adapter"
    with pytest.raises(RuntimeError):
        with atomic.folder(final) as folder:
            (folder / "weights").write_bytes(b"x" * 10)
            raise RuntimeError("killed mid-write")
    assert not final.exists() and list(tmp_path.iterdir()) == []
    with atomic.folder(final) as folder:
        (folder / "weights").write_bytes(b"new")
    assert (final / "weights").read_bytes() == b"new"
    atomic.write_text(tmp_path / "m.json", "{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter", "m.json"]


# ---------------------------------------------------------------------------- kills and full disks ---

KILL_IN_SAVE = """
import os, signal, sys
import transformers
original = transformers.Trainer._save_optimizer_and_scheduler
def dying(self, output_dir):   # the weights of this checkpoint are written; die before the rest
    if self.state.global_step == int(os.environ["KILL_AT_STEP"]):
        os.kill(os.getpid(), signal.SIGKILL)
    return original(self, output_dir)
transformers.Trainer._save_optimizer_and_scheduler = dying
from doctorkit.train import run
run(sys.argv[1:])
"""


@pytest.mark.slow
def test_kill_during_checkpoint_save_then_resume_completes(tmp_path):
    run_dir = tmp_path / "run"
    args = [QUICK, "--set", f"output_dir={run_dir}", "--set", "train.max_steps=6", "--set", "train.save_steps=2",
            "--set", "train.save_total_limit=5", "--set", "train.batch_size=2", "--set", "data.max_samples=24",
            "--set", "train.eval_steps=null", "--set", "data.val_ratio=0"]
    env = dict(os.environ, KILL_AT_STEP="4", HF_HUB_OFFLINE="1")
    killed = subprocess.run([sys.executable, "-c", KILL_IN_SAVE, *args], cwd=ROOT, env=env, capture_output=True, text=True)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert (run_dir / "checkpoints" / "checkpoint-4").is_dir() and not (run_dir / "recipe.yaml").exists()
    again = subprocess.run([sys.executable, "-m", "doctorkit.train", *args], cwd=ROOT, env=env, capture_output=True, text=True)
    assert again.returncode == 2 and "--resume" in again.stderr and "Traceback" not in again.stderr
    resumed = subprocess.run([sys.executable, "-m", "doctorkit.train", *args, "--resume"], cwd=ROOT, env=env,
                             capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "skipping incomplete checkpoint" in resumed.stdout and "checkpoint-2" in resumed.stdout
    from doctorkit.rundir import read_metrics, read_run_recipe
    assert read_metrics(run_dir)["global_step"] == 6 and read_run_recipe(run_dir).train.max_steps == 6
    assert not (run_dir / ".lock").exists()


KILL_IN_EXPORT = """
import os, signal, sys
import safetensors.torch
def dying(tensors, filename, metadata=None):   # half the file on disk, then the kill
    with open(filename, "wb") as out:
        out.write(b"\\0" * 4096)
        out.flush()
        os.fsync(out.fileno())
    os.kill(os.getpid(), signal.SIGKILL)
safetensors.torch.save_file = dying
from doctorkit.export import run
run(sys.argv[1:])
"""


@pytest.mark.slow
def test_kill_during_export_leaves_no_folder_that_loads(tmp_path, places, capsys):
    out = tmp_path / "exported"
    killed = subprocess.run([sys.executable, "-c", KILL_IN_EXPORT, str(places["run"]), "--out", str(out)],
                            cwd=ROOT, capture_output=True, text=True, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert not out.exists()                                      # only a .partial-* folder, which nobody opens
    assert [p.name.startswith(".partial-") for p in tmp_path.iterdir()] == [True]
    code, err = run_command(["doctorkit.chat", str(out), "--prompt", "hi"], capsys)
    assert code == 2 and "not found" in err and "Traceback" not in err


@pytest.fixture
def small_disk(tmp_path):
    """A 256 KiB tmpfs (root only); skips with the reason where mounting is not allowed."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({done.stderr.strip() or 'not root'})")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_full_disk_during_export_is_one_line_and_leaves_nothing(small_disk, places, capsys):
    """builtin:tiny merged is ~0.8 MiB in fp32: it cannot fit in 256 KiB."""
    out = small_disk / "exported"
    code, err = run_command(["doctorkit.export", str(places["run"]), "--out", str(out), "--dtype", "fp32"], capsys)
    assert code == 2 and "disk full" in err and str(small_disk) in err and "Traceback" not in err
    assert list(small_disk.iterdir()) == []                      # the half-written folder was removed


def test_full_disk_while_writing_run_files_names_the_folder(small_disk):
    from doctorkit import atomic
    from doctorkit.errors import DoctorKitError

    with pytest.raises(DoctorKitError, match=f"{small_disk}: disk full"):
        atomic.write_bytes(small_disk / "metrics.json", b"x" * 2**20)
    assert list(small_disk.iterdir()) == []
    atomic.write_text(small_disk / "metrics.json", "{}")         # space back: the same write works
    assert (small_disk / "metrics.json").read_text() == "{}"


@pytest.mark.slow
def test_full_disk_during_training_then_resume_after_space_is_freed(small_disk):
    """The run directory sits on the 256 KiB tmpfs: the first checkpoint (LoRA r=32 weights + AdamW state,
    over 1 MiB) cannot fit. One line naming the folder; after the disk grows, --resume finishes the run."""
    run_dir = small_disk / "run"
    args = [QUICK, "--set", f"output_dir={run_dir}", "--set", "train.max_steps=4", "--set", "train.save_steps=2",
            "--set", "train.batch_size=2", "--set", "data.max_samples=16", "--set", "train.eval_steps=null",
            "--set", "data.val_ratio=0"]
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    full = subprocess.run([sys.executable, "-m", "doctorkit.train", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True)
    assert full.returncode == 2 and "Traceback" not in full.stderr, full.stderr[-2000:]
    assert f"error: {run_dir}: disk full" in full.stderr and full.stderr.count("error:") == 1
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    resumed = subprocess.run([sys.executable, "-m", "doctorkit.train", *args, "--resume"], cwd=ROOT, env=env,
                             capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    from doctorkit.rundir import read_metrics
    assert read_metrics(run_dir)["global_step"] == 4 and (run_dir / "recipe.yaml").is_file()
