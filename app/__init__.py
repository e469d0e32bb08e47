"""The Gradio demo: `python -m app RUN_DIR` (or `doctorkit demo RUN_DIR`)."""
from app.cli import main, run

__all__ = ["main", "run"]
