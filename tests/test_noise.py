"""Library noise (bitsandbytes' kernel warning, deprecation warnings, transformers' log lines) never reaches our
one-line messages: it goes to RUN/library.log, or to stderr with --verbose (doctorkit.noise)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "recipes" / "quickstart.yaml"
KERNEL_WARNING = "Failed to load CPU gemm_4bit_forward from kernels-community: No module named 'kernels'"

# Runs a command as `python -m MODULE ARGS` would, with the noise of an AVX512-BF16 CPU added: when
# bitsandbytes is first imported, it logs its kernel warning (what bitsandbytes 0.50 does on such CPUs),
# transformers logs a line and a library issues a FutureWarning. Prints whether bitsandbytes was imported.
NOISY = f"""
import atexit, importlib.abc, logging, runpy, sys, warnings
fired = []
class Noisy(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "bitsandbytes" and not fired:
            fired.append(name)
            logging.getLogger("bitsandbytes.backends.cpu.ops").warning("{KERNEL_WARNING}. Please make sure ...")
            logging.getLogger("transformers.modeling_utils").warning("simulated transformers notice")
            warnings.warn("`simulated_option` is deprecated and will be removed in v6", FutureWarning)
        return None
sys.meta_path.insert(0, Noisy())
atexit.register(lambda: print("noise fired:", bool(fired)))
module, *args = sys.argv[1:]
sys.argv = [module, *args]
runpy.run_module(module, run_name="__main__")
"""


def run_noisy(*argv):
    proc = subprocess.run([sys.executable, "-c", NOISY, *argv], capture_output=True, text=True, cwd=ROOT,
                          env=dict(os.environ, HF_HUB_OFFLINE="1"), timeout=600)
    assert "noise fired: True" in proc.stdout   # the simulated noise really happened inside the command
    return proc


def test_unknown_model_stays_one_line_while_bitsandbytes_logs_on_import(tmp_path):
    proc = run_noisy("doctorkit.train", str(QUICKSTART), "--set", "model=no-such-org/no-such-model",
                     "--set", f"output_dir={tmp_path / 'run'}")
    err = proc.stderr.strip()
    assert proc.returncode == 2 and len(err.splitlines()) == 1 and err.startswith("error: model 'no-such-org/")
    assert "kernels" not in err and "deprecated" not in err


def test_verbose_shows_library_messages(tmp_path):
    proc = run_noisy("doctorkit.train", str(QUICKSTART), "--set", "model=no-such-org/no-such-model",
                     "--set", f"output_dir={tmp_path / 'run'}", "--verbose")
    assert proc.returncode == 2 and KERNEL_WARNING in proc.stderr and "simulated_option" in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: model 'no-such-org/")


@pytest.mark.slow
def test_training_writes_library_messages_to_the_run_directory(tmp_path):
    run_dir = tmp_path / "run"
    proc = run_noisy("doctorkit.train", str(QUICKSTART), "--set", f"output_dir={run_dir}", "--set",
                     "train.max_steps=2", "--set", "data.max_samples=8", "--set", "data.val_ratio=0",
                     "--set", "method=qlora")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert KERNEL_WARNING not in proc.stderr and "simulated" not in proc.stderr
    log = (run_dir / "library.log").read_text(encoding="utf-8")
    assert KERNEL_WARNING in log and "simulated transformers notice" in log and "simulated_option" in log
    assert "WARNING bitsandbytes.backends.cpu.ops" in log
    chat = run_noisy("doctorkit.chat", str(run_dir), "--prompt", "头痛怎么办？", "--max-new-tokens", "4")
    assert chat.returncode == 0, chat.stderr[-2000:]
    assert KERNEL_WARNING not in chat.stderr and "simulated" not in chat.stderr   # progress bars stay
    # train + chat append to one log: the simulated warning once each. (On an AVX512-BF16 CPU bitsandbytes also
    # logs its real warning, which ends "Please make sure you already ...": not counted here.)
    assert (run_dir / "library.log").read_text(encoding="utf-8").count(f"{KERNEL_WARNING}. Please make sure ...\n") == 2


@pytest.fixture
def routed():
    """Route noise in this process for one test, then put logging, warnings and the router back."""
    from doctorkit import noise

    restore = noise.route_library_noise()
    yield noise
    restore()


def test_our_own_warnings_still_reach_the_screen(routed, monkeypatch):
    """Only library warnings are routed; a warning raised by DoctorKit's code is for the user."""
    shown = []
    monkeypatch.setattr(routed, "_show_on_screen", lambda message, *rest: shown.append(str(message)))
    routed._show_warning(UserWarning("ptuning.prefix_projection: 30x more"), UserWarning,
                         str(ROOT / "doctorkit/methods/ptuning/__init__.py"), 67)
    routed._show_warning(FutureWarning("`x` is deprecated"), FutureWarning, "/site-packages/peft/x.py", 1)
    assert shown == ["ptuning.prefix_projection: 30x more"]
    assert any("deprecated" in r.getMessage() for r in routed._router.buffer)


def test_buffered_messages_land_in_the_log_file(routed, tmp_path):
    import logging

    logging.getLogger("bitsandbytes.backends.cpu.ops").warning("before the run directory is known")
    assert routed.log_to(tmp_path / "run") == tmp_path / "run" / "library.log"
    logging.getLogger("peft.tuners").warning("after")
    lines = (tmp_path / "run" / "library.log").read_text(encoding="utf-8").splitlines()
    assert [line.split(": ", 1)[1] for line in lines] == ["before the run directory is known", "after"]


def test_a_command_run_in_process_leaves_no_routing_behind(tmp_path, capsys):
    """cli_main undoes the routing when the command ends, error or not (tests run commands in-process)."""
    import logging

    from doctorkit import noise
    from doctorkit.data.__main__ import run

    before = logging.getLogger("transformers").propagate, logging.getLogger("bitsandbytes").handlers[:]
    with pytest.raises(SystemExit) as done:
        run(["stats", str(tmp_path / "missing.yaml")])
    assert done.value.code == 2 and len(capsys.readouterr().err.strip().splitlines()) == 1
    assert noise._router is None and noise.log_to(tmp_path) is None and not (tmp_path / "library.log").exists()
    assert (logging.getLogger("transformers").propagate, logging.getLogger("bitsandbytes").handlers) == before
