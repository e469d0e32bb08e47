"""OpenAI-compatible serving of runs (`python -m doctorkit.serve`, `doctorkit serve`); see doctorkit/serve/cli.py."""
from doctorkit.serve.cli import main, run

__all__ = ["main", "run"]
