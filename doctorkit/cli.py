"""`doctorkit <command> ...`: one console script that hands over to each command's own module."""
from __future__ import annotations

import importlib
import sys

# command: (module whose main(argv) runs it, one-line summary)
COMMANDS = {
    "train": ("doctorkit.train", "fine-tune a model from a recipe (LoRA, QLoRA, P-tuning v2, DPO)"),
    "data": ("doctorkit.data", "preview or count a recipe's data (preview / stats)"),
    "chat": ("doctorkit.chat", "chat with a run directory in the terminal"),
    "cost": ("doctorkit.cost", "estimate peak GPU memory, hours and money for a recipe"),
    "evaluate": ("doctorkit.evaluate", "score a run on dialogs or multiple-choice exams"),
    "export": ("doctorkit.export", "merge a LoRA run into a standalone model folder"),
    "knowledge": ("doctorkit.knowledge", "search a disease knowledge base"),
    "demo": ("app", "serve the Gradio chat demo"),
    "serve": ("doctorkit.serve", "serve runs through an OpenAI-compatible API (or vLLM)"),
    "translate": ("translate", "translation distillation: seed / distill / run / score"),
    "deid": ("doctorkit.deid", "de-identify a dialog file (names, ID / phone / record numbers, addresses...)"),
    "doctor": ("doctorkit.doctor", "describe this machine (GPUs, CUDA, bitsandbytes, disk) and which recipes fit"),
}


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        if argv and argv[0] not in ("-h", "--help"):
            print(f"error: unknown command '{argv[0]}'", file=sys.stderr)
        print("usage: doctorkit <command> [args]\n\ncommands:")
        for name, (_, summary) in COMMANDS.items():
            print(f"  {name:<10} {summary}")
        raise SystemExit(0 if not argv or argv[0] in ("-h", "--help") else 2)
    module = importlib.import_module(COMMANDS[argv[0]][0])
    sys.argv = [f"doctorkit {argv[0]}", *argv[1:]]
    module.run(argv[1:])


if __name__ == "__main__":
    main()
