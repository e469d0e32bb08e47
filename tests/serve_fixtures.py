"""Run directories and an in-process server for tests/test_serve.py.

The runs are written the way doctorkit.train writes them (adapter/, tokenizer/, recipe.yaml) on builtin:tiny,
without the training minute: adapter weights are random but fixed (seeded), so each run answers differently
from its base and from the others, which is what the serving tests check.
"""
from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest
import torch


def make_lora_run(run_dir: Path, seed: int) -> Path:
    from doctorkit.methods import get_method
    from doctorkit.recipe import Recipe, save_recipe
    from doctorkit.builtin.tiny import build_tiny

    recipe = Recipe(output_dir=str(run_dir))
    model, tokenizer = build_tiny()
    model = get_method("lora").wrap(model, recipe)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.5)
    model.save_pretrained(run_dir / "adapter")
    tokenizer.save_pretrained(run_dir / "tokenizer")
    save_recipe(recipe, run_dir / "recipe.yaml")
    return run_dir


def make_ptuning_run(run_dir: Path, seed: int = 2) -> Path:
    from doctorkit.methods import get_method
    from doctorkit.recipe import Recipe, save_recipe
    from doctorkit.builtin.tiny import build_tiny

    recipe = Recipe.model_validate({"output_dir": str(run_dir), "method": "ptuning",
                                    "ptuning": {"pre_seq_len": 8}, "data": {"packing": False}})
    model, tokenizer = build_tiny()
    model = get_method("ptuning").wrap(model, recipe)
    with torch.no_grad():   # a strong random prefix, so that it visibly steers the untrained model
        model.prefix_encoder.embedding.weight.copy_(
            torch.randn(model.prefix_encoder.embedding.weight.shape, generator=torch.Generator().manual_seed(seed)) * 4)
    model.save_pretrained(run_dir / "adapter")
    tokenizer.save_pretrained(run_dir / "tokenizer")
    save_recipe(recipe, run_dir / "recipe.yaml")
    return run_dir


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerThread:
    """doctorkit.serve built from CLI arguments, served by uvicorn in a thread on a free loopback port."""

    def __init__(self, argv: list[str]):
        import uvicorn

        from doctorkit.serve.cli import build, parse_args

        self.port = free_port()
        self.args = parse_args([*argv, "--port", str(self.port)])
        self.app, self.batchers = build(self.args)
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(timeout=10)
        for batcher in self.batchers.values():
            batcher.close()


def one_line_exit(run, argv, capsys) -> str:
    """`run(argv)` must stop with exit 2 and one stderr line, no traceback; returns that line (serve and demo)."""
    with pytest.raises(SystemExit) as stopped:
        run(argv)
    assert stopped.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    return err
