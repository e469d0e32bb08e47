"""The `doctorkit` console script reaches every command."""
import importlib

import pytest

from doctorkit.cli import COMMANDS, main


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_module_has_run(name):
    module = importlib.import_module(COMMANDS[name][0])
    assert callable(getattr(module, "run", None)), f"{COMMANDS[name][0]} has no run(argv)"


def test_help_lists_commands_and_unknown_command_exits_2(capsys):
    with pytest.raises(SystemExit) as ok:
        main(["--help"])
    out = capsys.readouterr().out
    assert ok.value.code == 0 and all(name in out for name in COMMANDS)
    with pytest.raises(SystemExit) as bad:
        main(["trian"])
    assert bad.value.code == 2 and "unknown command 'trian'" in capsys.readouterr().err
