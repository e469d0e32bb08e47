"""Offline: the kit keeps the hub offline unless asked, a missing model is one line, the demo's theme loads no
remote asset, and the bundle from `make bundle` installs and runs in a network namespace with only loopback.

The browser side (every request of the demo page goes to 127.0.0.1) is checked in tests/test_demo.py's browser
test, which already drives the page through chat and compare.
"""
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
AUDIT = REPO / "tests" / "helpers" / "offline"   # sitecustomize.py: logs every non-loopback connection attempt


def clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "DOCTORKIT_"))}
    return dict(env, **extra)


def test_commands_set_hub_offline_unless_downloads_are_allowed():
    probe = "import doctorkit, os, huggingface_hub.constants as c; print(os.environ.get('HF_HUB_OFFLINE'), c.HF_HUB_OFFLINE)"
    run = lambda env: subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True,
                                     check=True).stdout.split()
    assert run(clean_env()) == ["1", "True"]                                # the kit turned the hub off
    assert run(clean_env(DOCTORKIT_ALLOW_DOWNLOAD="1")) == ["None", "False"]   # the user asked for downloads
    assert run(clean_env(HF_HUB_OFFLINE="0")) == ["0", "False"]             # an explicit setting is respected


def test_missing_hub_model_is_one_line_naming_the_folder(monkeypatch, tmp_path):
    from doctorkit.errors import DoctorKitError
    from doctorkit.model import load_tokenizer

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DoctorKitError) as err:
        load_tokenizer("some-org/some-model")
    message = str(err.value)
    assert "\n" not in message and "./some-org/some-model" in message and "DOCTORKIT_ALLOW_DOWNLOAD=1" in message
    from translate.student import load_student   # the translation student: the same line, its own key
    with pytest.raises(DoctorKitError, match=r"copy the model folder to \./some-org/mt .*--set student\.model="):
        load_student("some-org/mt")


def test_demo_theme_fetches_no_font_from_a_cdn():
    from app.ui import THEME

    assert THEME._stylesheets == []                # a GoogleFont would put a fonts.googleapis.com URL here
    css = "\n".join(THEME._font_css)
    assert "url('static/fonts/SourceSansPro/" in css and "http" not in css
    assert "Noto Sans CJK SC" in THEME.font       # Chinese text falls back to a system CJK font, not a web font


def test_install_check_rejects_a_damaged_bundle(tmp_path):
    """install.sh --check on a two-file bundle: intact passes, one changed byte fails with one clear error."""
    shutil.copy(REPO / "bundle" / "install.sh", tmp_path / "install.sh")
    (tmp_path / "requirements.lock").write_text("x==1 --hash=sha256:00\n")
    subprocess.run("sha256sum install.sh requirements.lock > MANIFEST.sha256", shell=True, cwd=tmp_path, check=True)
    ok = subprocess.run(["bash", "install.sh", "--check"], cwd=tmp_path, capture_output=True, text=True)
    assert ok.returncode == 0 and "every file matches" in ok.stdout
    (tmp_path / "requirements.lock").write_text("x==2 --hash=sha256:00\n")
    bad = subprocess.run(["bash", "install.sh", "--check"], cwd=tmp_path, capture_output=True, text=True)
    assert bad.returncode == 2 and "does not match its manifest" in bad.stderr and "requirements.lock" in bad.stderr
    assert not (tmp_path / ".venv").exists()


# ------------------------------------------------------------ the bundle, in a namespace with no network ---

def network_namespace_or_skip() -> str:
    if os.geteuid() != 0:
        pytest.skip("needs root to create a network namespace (ip netns add)")
    if shutil.which("ip") is None:
        pytest.skip("needs the `ip` tool (iproute2) to create a network namespace")
    name = f"dk-offline-{uuid.uuid4().hex[:8]}"
    made = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot create a network namespace here: {made.stderr.strip()}")
    return name


@pytest.fixture(scope="session")
def namespaces():
    """Skip (saying why) before minutes go into a bundle that could not be tested here."""
    subprocess.run(["ip", "netns", "delete", network_namespace_or_skip()], check=True)


@pytest.fixture(scope="session")
def bundle_dir(namespaces):
    """`make bundle`'s folder; the builder reuses dist/'s third-party wheels when the pins did not change."""
    started = time.time()
    done = subprocess.run([sys.executable, str(REPO / "bundle" / "build.py")], cwd=REPO, capture_output=True,
                          text=True, timeout=1200)
    if done.returncode != 0:
        pytest.fail(f"bundle build failed:\n{(done.stdout + done.stderr)[-3000:]}")
    print(f"\nbundle built in {time.time() - started:.0f} s")
    return next((REPO / "dist").glob("doctorkit-bundle-*/"))


def test_network_attempt_recorder_sees_a_swallowed_attempt(tmp_path):
    """The recorder the namespace test relies on: a lookup that fails and is caught still lands in the log."""
    log = tmp_path / "attempts.log"
    code = ("import socket, urllib.request\n"
            "for call in (lambda: socket.getaddrinfo('cdn.example.org', 443), lambda: socket.create_connection(('127.0.0.1', 9), 1)):\n"
            "    try: call()\n"
            "    except OSError: pass\n")
    subprocess.run([sys.executable, "-c", code], env=dict(os.environ, PYTHONPATH=str(AUDIT), NETWORK_ATTEMPT_LOG=str(log)),
                   check=True)
    lines = log.read_text().splitlines()
    assert len(lines) == 1 and "cdn.example.org" in lines[0]   # loopback is not an attempt


# Runs inside the namespace with an empty environment: no proxy, no pip configuration, no HF_* variables.
IN_NAMESPACE = r"""
set -euo pipefail
ip link set lo up
ip -o link | grep -v ' lo:' && { echo "a non-loopback interface exists"; exit 3; }
cd "$WORK"
bash "$BUNDLE/install.sh" "$WORK/kit"
echo "step install: $SECONDS s"
KIT="$WORK/kit/.venv/bin"
"$KIT/doctorkit" train "$BUNDLE/recipes/quickstart.yaml" --set data.path="$BUNDLE/data/sample_zh.jsonl" \
  --set output_dir=runs/quickstart --set train.max_steps=20 --set train.eval_steps=10 --set train.save_steps=20
echo "step train: $SECONDS s"
"$KIT/doctorkit" chat runs/quickstart --prompt "医生您好，我头痛怎么办？" --temperature 0 --max-new-tokens 12 > chat.txt
echo "step chat: $SECONDS s"
"$KIT/doctorkit" demo runs/quickstart --port 7861 --knowledge "$BUNDLE/data/knowledge_zh.jsonl" > demo.log 2>&1 &
DEMO=$!
trap 'kill $DEMO 2>/dev/null || true' EXIT   # no demo left running if a step below fails
"$KIT/python" - <<'EOF'
import time, urllib.request
for _ in range(240):
    try:
        page = urllib.request.urlopen("http://127.0.0.1:7861/", timeout=5).read().decode()
        config = urllib.request.urlopen("http://127.0.0.1:7861/config", timeout=5).read().decode()
        theme = urllib.request.urlopen("http://127.0.0.1:7861/theme.css", timeout=5).read().decode()
        break
    except OSError:
        time.sleep(1)
else:
    raise SystemExit("demo did not answer on 127.0.0.1:7861")
open("page.html", "w").write(page); open("config.json", "w").write(config); open("theme.css", "w").write(theme)
EOF
kill $DEMO; wait $DEMO || true
echo "step demo: $SECONDS s"
"""


@pytest.mark.slow
def test_bundle_installs_and_runs_with_no_network(bundle_dir, tmp_path):
    namespace = network_namespace_or_skip()
    attempts = tmp_path / "network-attempts.log"
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
           "HOME": str(tmp_path), "WORK": str(tmp_path), "BUNDLE": str(bundle_dir), "PYTHONPATH": str(AUDIT),
           "NETWORK_ATTEMPT_LOG": str(attempts), "PYTHON": sys._base_executable, "OMP_NUM_THREADS": "1"}
    started = time.time()
    try:
        done = subprocess.run(["ip", "netns", "exec", namespace, "bash", "-c", IN_NAMESPACE], env=env,
                              capture_output=True, text=True, timeout=1200)
    finally:
        subprocess.run(["ip", "netns", "delete", namespace], check=False)
    output = done.stdout + done.stderr
    print(f"\noffline install + quickstart + chat + demo: {time.time() - started:.0f} s "
          f"({', '.join(line[5:] for line in output.splitlines() if line.startswith('step '))}, cumulative)")
    assert done.returncode == 0, output[-4000:]
    assert "every file matches its sha256" in output and "offline      yes" in output   # install.sh + doctor
    assert "doctorkit train recipes/quickstart.yaml" in output                           # the next command
    assert (tmp_path / "runs" / "quickstart" / "adapter").is_dir()
    assert (tmp_path / "chat.txt").read_text().strip()
    assert "DoctorKit" in (tmp_path / "config.json").read_text()
    assert "googleapis" not in (tmp_path / "theme.css").read_text()
    assert not attempts.exists(), f"something tried to reach the network:\n{attempts.read_text()}"
