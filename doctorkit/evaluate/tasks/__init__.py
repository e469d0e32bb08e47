"""Evaluation tasks: each one object that evaluate, its report and the recipe ask (as doctorkit.methods does for
training methods). A module in this folder is a task under its file name; `register("name", obj)` adds one from
anywhere (a class instance or a module of your own), and `evaluate --task name` / `eval.task: name` find it.

A task provides:

    SUMMARY                                   one line for --help
    load(path, max_samples, options) -> Loaded  items to score + skipped records (`file:line: reason`)
    predict(model, tokenizer, items, options, scorer=None, desc=...) -> list[dict]
                                              one JSON-able record per item (written to predictions.jsonl)
    score(records) -> dict                    metrics computed ONLY from the records, so they can be recounted
    HEADLINE                                  metric keys printed in the table and compared with --base
and, optional (their defaults are in DEFAULTS below, the one place they are written):
    Options                                   a dataclass subclassing EvalOptions with the task's own options
                                              (`--option key=value`, recipe `eval.options: {key: value}`); a
                                              field's metadata {"flag": "--x", "help": ...} also makes `--x` a flag
    DEFAULT_DATA                              --data default inside a run directory (a file name there)
    headline(metrics) -> [(name, text)]       the table's rows for one model's metrics (default: HEADLINE keys)
    details(results) -> [str]                 lines under the table ({"model": metrics, "base"?: metrics})
    chart(metrics) -> (ylabel, [(label, value, (low, high) | None)])   eval.png's bars for one model
    drop_contaminated(items, train_file) -> (items, info)   --exclude-contaminated (None: not supported)

`scorer` is the injection point for tests (fake scorers) and for other scoring backends.
"""
from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from dataclasses import asdict, dataclass
from typing import Optional

from pydantic import TypeAdapter, ValidationError

from doctorkit.errors import DoctorKitError
from doctorkit.registry import Registered


@dataclass
class EvalOptions:
    """What every task is given (the shared flags --max-new-tokens, --batch-size, --repetition-penalty, --system)."""
    max_new_tokens: int = 256        # generated replies are cut here
    batch_size: int = 8
    repetition_penalty: float = 1.0  # 1.0: measure the model's own repetition, do not hide it
    system_prompt: Optional[str] = None   # added to conversations without one (the run's data.system_prompt)

    def as_dict(self) -> dict:
        return asdict(self)


SHARED = tuple(f.name for f in dataclasses.fields(EvalOptions))


def option(default, flag: str | None = None, help: str = ""):   # noqa: A002 (argparse's word)
    """A field of a task's Options; `flag` also makes it a command-line flag of evaluate (--option works always)."""
    return dataclasses.field(default=default, metadata={"flag": flag, "help": help})


def _number(value) -> str:
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def _headline(task, metrics: dict) -> list[tuple[str, str]]:
    return [(key, _number(metrics.get(key))) for key in task.HEADLINE]


def _chart(task, metrics: dict):
    return "score", [(key, metrics.get(key, 0), None) for key in task.HEADLINE]


# Defaults of the optional facts; a callable here is called with the Task first (like a method of it).
DEFAULTS = {"Options": EvalOptions, "DEFAULT_DATA": None, "headline": _headline, "details": lambda task, results: [],
            "chart": _chart, "drop_contaminated": None}


class Task(Registered):
    """A task found by name, with DEFAULTS filled in for what it leaves out."""

    DEFAULTS = DEFAULTS

    def default(self, attr: str, value):
        return (lambda *args: value(self, *args)) if callable(value) and attr != "Options" else value

    def own_options(self) -> list[str]:
        return [f.name for f in dataclasses.fields(self.Options) if f.name not in SHARED]

    def given(self, options: EvalOptions | None) -> EvalOptions:
        """`options` as this task's Options: None gives the defaults, a plain EvalOptions its shared values."""
        if isinstance(options, self.Options):
            return options
        return self.options(**({key: getattr(options, key) for key in SHARED} if options is not None else {}))

    def options(self, values: dict | None = None, **shared) -> EvalOptions:
        """The task's Options from its own option values (CLI --option, recipe eval.options; strings are
        converted to the field's type) and the shared ones; an unknown or ill-typed one is a one-line error."""
        values = dict(values or {})
        own = self.own_options()
        for key in values:
            if key not in own:
                listed = f"its options: {', '.join(own)}" if own else "it has no options of its own"
                raise DoctorKitError(f"task {self.name} has no option '{key}' ({listed})")
        try:
            return TypeAdapter(self.Options).validate_python(values | shared)
        except ValidationError as err:
            first = err.errors()[0]
            key = first["loc"][0] if first["loc"] else "?"
            raise DoctorKitError(f"task {self.name}: option '{key}': {first['msg']} (got {first.get('input')!r})") from None


_REGISTERED: dict[str, object] = {}


def register(name: str, task) -> None:
    """Make `--task name` and `eval.task: name` evaluate with `task` (an object or module with the shape above)."""
    _REGISTERED[name] = task


def unregister(name: str) -> None:
    _REGISTERED.pop(name, None)


def available_tasks() -> list[str]:
    files = [m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")]
    return sorted(set(files) | set(_REGISTERED))


def get_task(name: str) -> Task:
    if name in _REGISTERED:
        return Task(name, _REGISTERED[name])
    if name not in available_tasks():
        raise DoctorKitError(f"unknown evaluation task '{name}' (available: {', '.join(available_tasks())})")
    return Task(name, importlib.import_module(f"{__name__}.{name}"))
