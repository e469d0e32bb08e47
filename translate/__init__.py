"""Translation distillation: a teacher API translates a sample, a small seq2seq student translates the rest.

Steps: seed -> distill -> run -> score / cost (`python -m translate --help`). `run(argv)` is the entry
point of `doctorkit translate`.
"""
from translate.cli import run

__all__ = ["run"]
