# DoctorKit: `make quickstart` trains the embedded tiny model offline and chats with it; `make test` runs the suite.
# Both create .venv if it is missing and install the project into it.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.doctorkit-installed
# torch is installed first, only when the venv has none: CPU machines here get the 2.13.0 wheel on disk;
# on a GPU machine install your CUDA build of torch into .venv first (or set TORCH_SPEC) and it is kept.
TORCH_SPEC ?= torch==2.13.0
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup quickstart test test-fast clean chromium cjk-fonts bundle

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[test]"
	@touch $@

setup: $(STAMP)

quickstart: setup
	$(BIN)/python -m doctorkit.train recipes/quickstart.yaml --overwrite
	$(BIN)/python -m doctorkit.chat runs/quickstart --prompt "医生您好，我最近一周头痛，该怎么办？"

# The demo's browser test drives the system Chromium (Debian package; no Playwright browser download).
chromium:
	@test -x /usr/bin/chromium || { test "$$(id -u)" = 0 && apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	  echo "note: /usr/bin/chromium missing (install it as root: apt-get install -y chromium); browser tests will skip"

# Charts name Chinese exams and subjects: Debian's Noto CJK font renders them (else they fall back to S1..Sn).
cjk-fonts:
	@test -f /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc || { test "$$(id -u)" = 0 && apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fonts-noto-cjk >/dev/null; } || \
	  echo "note: fonts-noto-cjk missing (as root: apt-get install -y fonts-noto-cjk); charts label Chinese names S1..Sn"
# Air-gapped install: dist/doctorkit-bundle-<version>/ (wheels pinned to .venv, lock with hashes, install.sh).
# MODEL=/path/to/model adds a model folder; TORCH_SPEC=... (given explicitly) replaces the venv's torch.
bundle: setup
	$(BIN)/python bundle/build.py $(if $(filter file,$(origin TORCH_SPEC)),,--torch "$(TORCH_SPEC)") \
	  $(if $(MODEL),--model "$(MODEL)")

test: setup chromium cjk-fonts
	$(BIN)/python -m pytest -q

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow and not browser"

clean:
	rm -rf runs build *.egg-info
