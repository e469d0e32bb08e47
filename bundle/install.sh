#!/usr/bin/env bash
# DoctorKit offline install: run on the server that has no internet, from the copied bundle folder.
#   bash install.sh            verify every file, create .venv in this folder, install, run `doctorkit doctor`
#   bash install.sh DIR        the same, with the venv in DIR/.venv
#   bash install.sh --check    verify every file against MANIFEST.sha256 and stop
# Needs: bash, sha256sum, and Python with venv (same minor version as the build: see PYTHON_VERSION).
# PYTHON=/usr/bin/python3.11 bash install.sh picks the interpreter. Nothing is fetched from any network.
set -euo pipefail

BUNDLE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CHECK_ONLY=0
TARGET="$BUNDLE"
for arg in "$@"; do
  case "$arg" in
    --check) CHECK_ONLY=1 ;;
    -h|--help) sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "error: unknown option $arg (try --help)" >&2; exit 2 ;;
    *) TARGET="$arg" ;;
  esac
done
fail() { echo "error: $*" >&2; exit 2; }

echo "verifying $(wc -l < "$BUNDLE/MANIFEST.sha256") files against MANIFEST.sha256 ..."
bad="$(cd "$BUNDLE" && sha256sum -c --quiet MANIFEST.sha256 2>&1)" || \
  fail "the bundle does not match its manifest (damaged or incomplete copy; copy it again):"$'\n'"$bad"
echo "ok: every file matches its sha256"
[ "$CHECK_ONLY" = 1 ] && exit 0

PYTHON="${PYTHON:-python3}"
want="$(cat "$BUNDLE/PYTHON_VERSION")"
have="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" || \
  fail "$PYTHON not found; install Python $want (with venv) or set PYTHON=/path/to/python$want"
[ "$have" = "$want" ] || fail "this bundle was built for Python $want, $PYTHON is $have; set PYTHON=/path/to/python$want"

mkdir -p "$TARGET"
VENV="$(cd "$TARGET" && pwd)/.venv"
if [ ! -x "$VENV/bin/python" ]; then
  echo "creating $VENV ..."
  "$PYTHON" -m venv "$VENV" || fail "could not create a venv (Debian/Ubuntu: apt-get install python$want-venv)"
fi
echo "installing $(grep -c -- '--hash=' "$BUNDLE/requirements.lock") wheels from $BUNDLE/wheels (no network) ..."
start=$SECONDS
# No pip configuration of this machine applies (no index, no mirror, no extra find-links): only the bundle.
# --no-compile: byte-compiling all of torch/transformers/gradio tripled the install's CPU time (measured);
# Python compiles the modules a command really imports on its first run instead.
PIP_CONFIG_FILE=/dev/null "$VENV/bin/python" -m pip --isolated install --no-index --disable-pip-version-check \
  --no-cache-dir --no-compile --find-links "$BUNDLE/wheels" --require-hashes -r "$BUNDLE/requirements.lock" -q
echo "installed in $((SECONDS - start)) s"

"$VENV/bin/doctorkit" doctor --recipes "$BUNDLE/recipes" || fail "installed, but \`doctorkit doctor\` found a problem (above)"
cat <<EOF

DoctorKit is installed in $VENV. Next, train the quickstart and chat with it (CPU, a few minutes):
  cd $BUNDLE && $VENV/bin/doctorkit train recipes/quickstart.yaml && $VENV/bin/doctorkit chat runs/quickstart
EOF
for model in "$BUNDLE"/models/*/; do
  [ -d "$model" ] && echo "  $VENV/bin/doctorkit train recipes/lora.yaml --set model=${model%/}   # the model in this bundle"
done
exit 0
