"""One kind of error for everything a user can get wrong, and one way to show it.

Commands raise `DoctorKitError("file:line: what is wrong")` for bad input; `cli_main` turns it into a
single line on stderr and exit code 2, so a hospital engineer never reads a Python traceback for a typo.
"""
from __future__ import annotations

import sys
from typing import Callable


class DoctorKitError(Exception):
    """Bad input (recipe, data, model, API): the message is the whole story, shown on one line."""


def cli_main(main: Callable[[list[str] | None], int | None], argv: list[str] | None = None,
             library_noise: bool = True) -> None:
    """Run a command's main(); bad input exits 2 with one line, Ctrl-C exits 130 quietly.

    Library log records and warnings are held back for the run directory's log file (doctorkit.noise) unless
    `--verbose` is given; library_noise=False for commands that load no library worth routing (doctor).
    """
    from doctorkit.noise import route_library_noise, wants_verbose

    argv, verbose = wants_verbose(list(sys.argv[1:] if argv is None else argv))
    restore = route_library_noise(verbose) if library_noise else (lambda: None)
    try:
        code = main(argv)
    except DoctorKitError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    finally:
        restore()
    raise SystemExit(code or 0)
