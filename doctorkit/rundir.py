"""The run directory: the contract between training and everything after it (chat, demo, eval, export, cost).

    RUN_DIR/
      adapter/        trained parameters (PEFT format: LoRA / QLoRA adapter, P-tuning v2 prefix)
      tokenizer/      the tokenizer, chat template included
      recipe.yaml     the resolved recipe; `model` names the base, `method` how to load the adapter
      metrics.json    losses, token counts, speed, memory, skipped samples (see README)
      loss.png        training and eval loss curves
      tb/             TensorBoard logs
      checkpoints/    Trainer checkpoints for --resume
      .lock           held (flock) by the process training into the folder; names its PID
      eval/<task>-<data>/  evaluation results (predictions.jsonl, base_predictions.jsonl, metrics.json, eval.png)

recipe.yaml is written last (every file atomically, doctorkit.atomic): its presence marks a finished run.
An exported model folder (config.json + weights, no recipe.yaml) loads the same way for chat and demo.
Readers check what they load first (check_adapter, check_model_folder) and name the file that is
missing, empty, truncated or contradicts the recipe: "incomplete: ..." or "corrupt: ...", one line.
"""
from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from doctorkit.errors import DoctorKitError
from doctorkit.noise import log_to

ADAPTER, TOKENIZER, RECIPE, METRICS, LOSS_PNG, TB, CHECKPOINTS, LOCK = (
    "adapter", "tokenizer", "recipe.yaml", "metrics.json", "loss.png", "tb", "checkpoints", ".lock")


@dataclass
class Run:
    model: torch.nn.Module
    tokenizer: object
    recipe: object | None   # None for an exported, standalone model folder
    run_dir: Path


def write_metrics(run_dir: Path, metrics: dict) -> None:
    from doctorkit import atomic

    atomic.write_text(Path(run_dir) / METRICS, json.dumps(metrics, indent=2, ensure_ascii=False) + "\n")


def read_metrics(run_dir: Path) -> dict:
    return read_json(Path(run_dir) / METRICS)


def read_json(path: Path) -> dict:
    """A JSON object from a file the kit wrote; a missing, empty or cut-off file is one line naming it."""
    if not path.is_file():
        raise DoctorKitError(f"incomplete: {path} is missing")
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DoctorKitError(f"corrupt: {path} is not valid JSON ({getattr(err, 'msg', err)})") from None
    if not isinstance(value, dict):
        raise DoctorKitError(f"corrupt: {path} holds a {type(value).__name__}, expected a JSON object")
    return value


def read_run_recipe(run_dir: str | Path):
    """The recipe of a finished run; one-line error for a missing or half-written run directory."""
    from doctorkit.recipe import load_recipe

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DoctorKitError(f"{run_dir}: run directory not found (train one: python -m doctorkit.train RECIPE)")
    if not (run_dir / RECIPE).is_file():
        raise DoctorKitError(f"{run_dir}: no {RECIPE} here; not a run directory, or its training did not finish")
    recipe = load_recipe(run_dir / RECIPE, saved=True)
    if not (run_dir / ADAPTER).is_dir():
        raise DoctorKitError(f"{run_dir}: no {ADAPTER}/ here; the run did not finish (resume it with --resume)")
    check_adapter(run_dir / ADAPTER, recipe.method)
    return recipe


def is_run_dir(path: str | Path) -> bool:
    """A folder training wrote (recipe.yaml present), finished or not; read_run_recipe says what is missing."""
    return (Path(path) / RECIPE).is_file()


def is_exported_model(path: str | Path) -> bool:
    """A folder written by doctorkit.export (config.json + weights, no recipe.yaml) rather than a run directory."""
    return (Path(path) / "config.json").is_file() and not is_run_dir(path)


def load_run(run_dir: str | Path, device: str | None = None) -> Run:
    """Base model + trained parameters + tokenizer, in eval mode, ready to generate."""
    from transformers import AutoModelForCausalLM

    from doctorkit.methods import get_method
    from doctorkit.model import load_model_and_tokenizer, load_tokenizer, resolve_dtype

    run_dir = Path(run_dir)
    if run_dir.is_dir():
        log_to(run_dir)   # chat / demo / evaluate: library messages go to RUN/library.log (doctorkit.noise)
    if is_exported_model(run_dir):
        check_model_folder(run_dir)
        with loading(run_dir):
            model = AutoModelForCausalLM.from_pretrained(run_dir, dtype=resolve_dtype("auto"))
            tokenizer = load_tokenizer(run_dir)
        return Run(_ready(model, device), tokenizer, None, run_dir)
    recipe = read_run_recipe(run_dir)
    method = get_method(recipe.method)
    model, tokenizer = load_model_and_tokenizer(recipe, for_training=False, extra_kwargs=method.load_kwargs(recipe))
    if (run_dir / TOKENIZER).is_dir():
        with loading(run_dir / TOKENIZER):
            tokenizer = load_tokenizer(run_dir, recipe.trust_remote_code)   # the run's own tokenizer/
    with loading(run_dir / ADAPTER):
        model = method.load(model, run_dir)
    return Run(_ready(model, device), tokenizer, recipe, run_dir)


def _ready(model, device):
    if device and not getattr(model, "is_loaded_in_4bit", False) and not getattr(model, "is_loaded_in_8bit", False):
        model = model.to(device)
    model.eval()
    model.config.use_cache = True  # generation needs the cache (and P-tuning's prefix lives in it)
    return model


# ---------------------------------------------------- evaluation results ---
# RESULTS = RUN_DIR/eval/<task>-<data>/ (or evaluate --out): one predictions file per model scored, the chart,
# metrics.json (every number printed) last. A suite writes suite.json beside one such folder per exam.
EVAL, EVAL_PNG, SUITE = "eval", "eval.png", "suite.json"
SUITE_PNG, SUITE_LABELS = "suite.png", "suite_labels.md"   # the suite's chart, and its S1..Sn legend without a CJK font
PREDICTIONS = {"model": "predictions.jsonl", "base": "base_predictions.jsonl"}


def eval_dir(run_dir: str | Path | None, *names: str) -> Path:
    """Default results folder: RUN_DIR/eval/NAME..., or runs/eval/NAME... for a model that is no run directory."""
    return Path(run_dir if run_dir is not None else "runs", EVAL, *names)


def write_eval(out_dir: str | Path, summary: dict, records: dict[str, list[dict]], draw) -> dict:
    """Write RESULTS/: predictions per model ({"model": rows, "base": rows}), the chart (`draw(summary, path)`),
    then metrics.json holding `summary`, to which the file names and the folder are added (and returned)."""
    from doctorkit import atomic

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary["files"] = {}
    for which, rows in records.items():
        atomic.write_text(out / PREDICTIONS[which], "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        summary["files"][which] = PREDICTIONS[which]
    summary["out_dir"] = str(out)
    draw(summary, out / EVAL_PNG)
    write_metrics(out, summary)
    return summary


def read_predictions(out_dir: str | Path, which: str = "model") -> list[dict]:
    path = Path(out_dir) / PREDICTIONS[which]
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def record_eval(run_dir: str | Path, entry: dict) -> None:
    """RUN_DIR/metrics.json gets the evaluation after training under "eval"; training's numbers stay."""
    metrics = read_metrics(run_dir) if (Path(run_dir) / METRICS).is_file() else {}
    metrics["eval"] = entry
    write_metrics(run_dir, metrics)


def write_suite(out_dir: str | Path, result: dict) -> None:
    from doctorkit import atomic

    atomic.write_text(Path(out_dir) / SUITE, json.dumps(result, indent=2, ensure_ascii=False) + "\n")


# ------------------------------------------------------------ integrity ---

@contextlib.contextmanager
def loading(where: Path):
    """Whatever a library raises while loading files we checked is still a corrupt file: one line, no traceback."""
    try:
        yield
    except DoctorKitError:
        raise
    except Exception as err:  # safetensors, json, PEFT, tokenizers: each raises its own type
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise DoctorKitError(f"corrupt: {where} cannot be loaded ({reason})") from None


def check_safetensors(path: Path) -> None:
    """A safetensors file is whole when its header parses and the data it announces is all there."""
    size = path.stat().st_size if path.is_file() else -1
    if size < 0:
        raise DoctorKitError(f"incomplete: {path} is missing")
    if size == 0:
        raise DoctorKitError(f"corrupt: {path} is empty (0 bytes)")
    with open(path, "rb") as handle:
        head = handle.read(8)
        length = int.from_bytes(head, "little") if len(head) == 8 else -1
        header = handle.read(length) if 0 <= length <= size - 8 else b""
    try:
        table = json.loads(header)
        end = max([v["data_offsets"][1] for k, v in table.items() if k != "__metadata__"] + [0])
    except (ValueError, KeyError, TypeError, IndexError):
        raise DoctorKitError(f"corrupt: {path} is truncated or not a safetensors file ({size} bytes)") from None
    if 8 + length + end > size:
        raise DoctorKitError(f"corrupt: {path} is truncated ({size} of {8 + length + end} bytes)")


def check_adapter(adapter_dir: Path, method_name: str) -> None:
    """The trained parameters are all there, readable, and of the kind recipe.yaml's method says."""
    from doctorkit.methods import METHODS, get_method

    method = get_method(method_name)
    config = adapter_dir / method.ADAPTER_CONFIG
    if not config.is_file():
        for other in METHODS:
            theirs = get_method(other).ADAPTER_CONFIG
            if theirs != method.ADAPTER_CONFIG and (adapter_dir / theirs).is_file():
                raise DoctorKitError(f"corrupt: {adapter_dir} holds {theirs} (a {other} adapter) but "
                                     f"{adapter_dir.parent / RECIPE} says method '{method_name}'")
        raise DoctorKitError(f"incomplete: {config} is missing")
    read_json(config)
    weights = [adapter_dir / name for name in method.ADAPTER_WEIGHTS if (adapter_dir / name).is_file()]
    if not weights:
        raise DoctorKitError(f"incomplete: {adapter_dir} has no weights ({' or '.join(method.ADAPTER_WEIGHTS)})")
    if weights[0].suffix == ".safetensors":
        check_safetensors(weights[0])
    elif weights[0].stat().st_size == 0:
        raise DoctorKitError(f"corrupt: {weights[0]} is empty (0 bytes)")


def check_model_folder(folder: Path) -> None:
    """An exported (or downloaded) model folder: JSON configs parse, weight files are whole."""
    read_json(folder / "config.json")
    for name in ("tokenizer_config.json", "generation_config.json", "tokenizer.json"):
        if (folder / name).exists():
            read_json(folder / name)
    weights = sorted(folder.glob("*.safetensors"))
    if not weights and not list(folder.glob("*.bin")):
        raise DoctorKitError(f"incomplete: {folder} has no weight files (*.safetensors)")
    for path in weights:
        check_safetensors(path)


# -------------------------------------------------------- lock / resume ---

class RunLock:
    """Held by the one process training into a run directory; a second one is refused in one line.

    flock() is the lock itself (the kernel drops it when the holder dies, so a killed run never blocks the
    next); the PID written into the file is only there to name the holder. A lock file whose flock is free
    is stale (its process died) and is taken over.
    """

    def __init__(self, run_dir: Path):
        import fcntl
        import os

        from doctorkit import atomic

        self.path = Path(run_dir) / LOCK
        with atomic.disk_errors(run_dir):
            Path(run_dir).mkdir(parents=True, exist_ok=True)
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(self.fd, 64).decode(errors="replace").strip() or "?"
            os.close(self.fd)
            raise DoctorKitError(f"{run_dir}: another training (PID {holder}) is writing into this folder; wait "
                                 f"for it to finish or choose another output_dir") from None
        stale = os.read(self.fd, 64).decode(errors="replace").strip()
        if stale:
            print(f"{run_dir}: taking over the lock of PID {stale}, which is no longer running")
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        import os

        if self.fd is not None:
            try:
                self.path.unlink(missing_ok=True)  # first, so that nobody finds a file without a holder
            finally:
                os.close(self.fd)
                self.fd = None


def checkpoint_problem(folder: Path) -> str | None:
    """Why a Trainer checkpoint cannot be resumed from, or None when it is whole.

    transformers writes trainer_state.json last (after weights, optimizer and RNG state), so a checkpoint
    cut off by a kill or a full disk lacks it or holds a cut-off copy; the weights are checked as well.
    """
    try:
        state = json.loads((folder / "trainer_state.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        return "no trainer_state.json (the save was cut off)"
    except (json.JSONDecodeError, UnicodeDecodeError, OSError):
        return "trainer_state.json is cut off"
    if not isinstance(state, dict) or "global_step" not in state:
        return "trainer_state.json is cut off"
    for weights in folder.glob("*.safetensors"):
        try:
            check_safetensors(weights)
        except DoctorKitError as err:
            return str(err)
    return None


def resumable_checkpoint(folder: Path) -> tuple[str | None, list[tuple[Path, str]]]:
    """(newest whole checkpoint-N in `folder` or None, [(incomplete checkpoint, why)] newer than it)."""
    found = []
    for path in folder.glob("checkpoint-*") if folder.is_dir() else []:
        suffix = path.name.split("-", 1)[1]
        if path.is_dir() and suffix.isdigit():
            found.append((int(suffix), path))
    skipped = []
    for _, path in sorted(found, reverse=True):
        why = checkpoint_problem(path)
        if why is None:
            return str(path), skipped
        skipped.append((path, why))
    return None, skipped


def recipe_value(recipe, dotted: str):
    for part in dotted.split("."):
        recipe = getattr(recipe, part)
    return recipe


def changed_resume_keys(saved, recipe, keys: tuple[str, ...]) -> list[str]:
    """Keys in `keys` whose value differs between the recipe a run started with and the resuming one."""
    return [key for key in keys if recipe_value(saved, key) != recipe_value(recipe, key)]
