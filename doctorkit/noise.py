"""Library noise goes to a log file, not between the user and our one-line messages.

bitsandbytes logs a kernel warning when it loads on some CPUs, transformers / PEFT / TRL / torch print
deprecation and "you may want to" warnings on every run: none of it is something a hospital engineer can act
on, and it turned one-line errors into several lines. Each command (errors.cli_main) routes the Python
`logging` records of those libraries and every `warnings.warn` into a buffer; once the command knows its run
directory it calls `log_to(RUN/library.log)` and the buffer (and everything after) lands there. `--verbose` (or
DOCTORKIT_VERBOSE=1) shows them on stderr instead. Progress bars and our own output are untouched.
"""
from __future__ import annotations

import logging
import os
import sys
import warnings
from pathlib import Path

LOG_NAME = "library.log"
# Loggers whose records are library noise for our users (child loggers, e.g. bitsandbytes.backends.cpu.ops,
# propagate to these). "py.warnings" is where library warnings.warn calls go (_show_warning).
LIBRARY_LOGGERS = ("bitsandbytes", "transformers", "peft", "trl", "accelerate", "datasets", "torch",
                   "huggingface_hub", "sentence_transformers", "gradio", "httpx", "urllib3", "jieba", "py.warnings")
MAX_BUFFERED = 2000   # records kept before a log file is known; more is a library in a loop, not a diagnosis
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _Router(logging.Handler):
    """Holds records until log_to() names a file, then writes them there (and later ones as they come)."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter(FORMAT))
        self.buffer: list[logging.LogRecord] = []
        self.file: logging.FileHandler | None = None

    def emit(self, record):
        if self.file is not None:
            self.file.emit(record)
        elif len(self.buffer) < MAX_BUFFERED:
            self.buffer.append(record)

    def log_to(self, path: Path):
        if self.file is not None and Path(self.file.baseFilename) == path.resolve():
            return
        if self.file is not None:
            self.file.close()
        self.file = logging.FileHandler(path, encoding="utf-8")
        self.file.setFormatter(self.formatter)
        for record in self.buffer:
            self.file.emit(record)
        self.buffer.clear()


_router: _Router | None = None


def wants_verbose(argv: list[str]) -> tuple[list[str], bool]:
    """(argv without --verbose, whether library messages should be shown)."""
    verbose = "--verbose" in argv or os.environ.get("DOCTORKIT_VERBOSE", "") not in ("", "0")
    return [a for a in argv if a != "--verbose"], verbose


def route_library_noise(verbose: bool = False):
    """Send library log records and warnings to the buffer/log file (or, verbose, to stderr).

    Returns a function that undoes it (a command run in-process, as tests do, leaves no routing behind)."""
    global _router, _show_on_screen
    saved = [(name, logging.getLogger(name).handlers[:], logging.getLogger(name).propagate) for name in LIBRARY_LOGGERS]
    saved_show = warnings.showwarning
    if warnings.showwarning is not _show_warning:
        _show_on_screen = warnings.showwarning
    warnings.showwarning = _show_warning
    handler = logging.StreamHandler(sys.stderr) if verbose else (_router or _Router())
    if verbose:
        handler.setFormatter(logging.Formatter(FORMAT))
    else:
        _router = handler
    for name in LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers = [h for h in logger.handlers if not isinstance(h, (_Router, logging.StreamHandler))]
        logger.addHandler(handler)
        logger.propagate = False
    _adopt_transformers_logging()

    def restore():
        global _router
        for name, handlers, propagate in saved:
            logging.getLogger(name).handlers, logging.getLogger(name).propagate = handlers, propagate
        warnings.showwarning = saved_show
        if _router is not None and _router.file is not None:
            _router.file.close()
        _router = None
    return restore


_OUR_CODE = tuple(str(Path(__file__).resolve().parent.parent / name) for name in ("doctorkit", "app", "translate"))
_show_on_screen = warnings.showwarning


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """Our own warnings (e.g. ptuning.prefix_projection's cost) are for the user; the libraries' go to the log."""
    if str(filename).startswith(_OUR_CODE):
        _show_on_screen(message, category, filename, lineno, file, line)
    else:
        logging.getLogger("py.warnings").warning("%s", warnings.formatwarning(message, category, filename, lineno, line).rstrip())


def _adopt_transformers_logging() -> None:
    """transformers installs its own stderr handler the first time it logs; install it now and remove it, so its
    records reach only our handler. Importing its logging module loads the transformers package (about a
    second), which every command that routes noise imports anyway."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        return
    hf_logging.disable_default_handler()
    hf_logging.disable_propagation()


def log_to(folder: str | Path) -> Path | None:
    """From now on library messages go to FOLDER/library.log (buffered ones first); None if not writable."""
    if _router is None:
        return None
    path = Path(folder) / LOG_NAME
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _router.log_to(path)
    except OSError:
        return None   # a read-only run directory (an exported model on a shared disk): keep quiet, not fail
    return path
