"""`python -m doctorkit.serve TARGET [--adapter NAME=RUN_DIR ...] [--host 127.0.0.1] [--port 8000]`

Serves a run directory (LoRA / QLoRA / P-tuning v2 / DPO), an exported model folder or a base model through an
OpenAI-compatible API (/v1/chat/completions, /v1/models, /health). --adapter adds runs on the same base,
selected by the request's `model`; the base answers under its own name. Safe by default: binds 127.0.0.1;
another address needs --api-key-env; request size, prompt tokens, max_tokens, queue and time are capped;
one audit line per request (no message content unless --log-content).
--engine vllm prints and starts vLLM's OpenAI server for the same runs instead (GPUs, large scale).
"""
from __future__ import annotations

import argparse
import os
import re
import socket
import sys
from pathlib import Path

from doctorkit.errors import DoctorKitError, cli_main

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m doctorkit.serve", description=__doc__.splitlines()[0])
    p.add_argument("target", help="run directory, exported model folder, or base model (hub id, folder, builtin:tiny)")
    p.add_argument("--adapter", action="append", default=[], metavar="NAME=RUN_DIR",
                   help="another run on the same base, served as model NAME (repeatable)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--api-key-env", metavar="NAME", help="environment variable holding the API key(s), "
                   "comma-separated; required to bind a non-loopback address")
    p.add_argument("--knowledge", help="knowledge-base JSONL grounding every request (default: each run's "
                   "data.knowledge); a request turns it off with \"knowledge\": false")
    p.add_argument("--audit-log", default="serve-audit.jsonl", help="append-only JSONL, one line per request "
                   "(default serve-audit.jsonl; '' turns it off)")
    p.add_argument("--log-content", action="store_true", help="also log messages and replies (patient text!)")
    p.add_argument("--max-request-bytes", type=int, default=64_000)
    p.add_argument("--max-prompt-tokens", type=int, default=2048, help="system + history + message + knowledge")
    p.add_argument("--max-tokens", type=int, default=1024, help="largest max_tokens a request may ask for")
    p.add_argument("--queue-size", type=int, default=64, help="requests allowed to wait per model (then 429)")
    p.add_argument("--queue-timeout", type=float, default=60.0, help="seconds a request may wait (then 503)")
    p.add_argument("--time-limit", type=float, default=120.0, help="seconds of generation per reply")
    p.add_argument("--max-batch", type=int, default=16, help="requests generated together")
    p.add_argument("--batch-window-ms", type=float, default=20.0, help="how long a batch waits for company")
    p.add_argument("--device", help="cuda / cpu (default: cuda when available)")
    p.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's; 1 on a busy shared CPU)")
    p.add_argument("--engine", choices=["builtin", "vllm"], default="builtin")
    p.add_argument("--tensor-parallel-size", type=int, default=1, help="vLLM: GPUs per model")
    p.add_argument("--dry-run", action="store_true", help="vLLM: print the command, do not start it")
    return p.parse_args(argv)


def api_keys(env_name: str | None, host: str) -> list[str]:
    if env_name is None:
        if host not in LOOPBACK:
            raise DoctorKitError(f"--host {host} makes the API reachable from the network; "
                                 f"set --api-key-env NAME (an environment variable holding the key)")
        return []
    keys = [k for k in re.split(r"[,\s]+", os.environ.get(env_name, "")) if k]
    if not keys:
        raise DoctorKitError(f"--api-key-env {env_name}: that environment variable is unset or empty")
    if any(len(k) < 16 for k in keys):
        raise DoctorKitError(f"--api-key-env {env_name}: every key needs at least 16 characters")
    return keys


def check_port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as sock:
        # as uvicorn binds: connections of a previous server in TIME_WAIT must not block a restart
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as err:
            raise DoctorKitError(f"{host}:{port}: cannot listen there ({err.strerror}); choose another --port") from None


def check_limits(args) -> None:
    for flag in ("max_request_bytes", "max_prompt_tokens", "max_tokens", "queue_size", "max_batch"):
        if getattr(args, flag) <= 0:
            raise DoctorKitError(f"--{flag.replace('_', '-')} must be positive")
    if args.queue_timeout <= 0 or args.time_limit <= 0 or args.batch_window_ms < 0:
        raise DoctorKitError("--queue-timeout and --time-limit must be positive, --batch-window-ms not negative")


def check_args(args) -> tuple[list, list[str]]:
    """Every check that needs no model: one line each, before anything slow. Returns (adapters, API keys)."""
    from doctorkit.serve.models import parse_adapter

    adapters = [parse_adapter(a) for a in args.adapter]
    if args.target.startswith(("/", "./", "../", "~")) and not Path(args.target).expanduser().exists():
        raise DoctorKitError(f"{args.target}: not found (give a run directory, a model folder or a hub id)")
    check_limits(args)
    keys = api_keys(args.api_key_env, args.host)
    if args.knowledge:
        from doctorkit.knowledge.cli import load_reporting
        load_reporting(args.knowledge)   # warns about skipped lines; one line on a missing file
    return adapters, keys


def build(args):
    """Load every model and return (app, batchers); split from main() so tests and bench start it in-process."""
    from doctorkit.serve.app import Limits, create_app
    from doctorkit.serve.audit import AuditLog
    from doctorkit.serve.batcher import Batcher
    from doctorkit.serve.models import load_served

    adapters, keys = check_args(args)
    check_port_free(args.host, args.port)
    print(f"loading {args.target} ...", flush=True)
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    served = load_served(args.target, adapters, device=args.device)
    batchers = {}
    for s in served.values():
        if id(s.backend) not in batchers:
            batchers[id(s.backend)] = Batcher(s.backend, args.max_batch, args.batch_window_ms / 1000, args.queue_size,
                                              args.queue_timeout, args.time_limit)
    limits = Limits(args.max_request_bytes, args.max_prompt_tokens, args.max_tokens,
                    min(256, args.max_tokens), keys)
    audit = AuditLog(args.audit_log or None, args.log_content)
    if args.log_content:  # logged content is de-identified: build the name segmenter now, not on a request
        from doctorkit.deid import warm_up
        warm_up()
    return create_app(served, batchers, limits, audit, grounders(served, args.knowledge)), batchers


def grounders(served: dict, knowledge: str | None) -> dict:
    """Per served name, the same grounding chat and the demo use (the run's data.knowledge keys, or --knowledge)."""
    from doctorkit.knowledge import KnowledgeSettings, grounder
    from doctorkit.recipe import DataConfig

    out = {}
    for name, s in served.items():
        data = s.data or DataConfig()
        data = data.model_copy(update={"knowledge": knowledge or data.knowledge})
        out[name] = grounder(KnowledgeSettings.from_data_config(data), s.tokenizer)
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.engine == "vllm":
        from doctorkit.serve.vllm import main_vllm
        return main_vllm(args)
    app, batchers = build(args)

    import uvicorn
    print(f"serving on http://{args.host}:{args.port}/v1 (models: {', '.join(n for n in app_models(batchers))})",
          flush=True)
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning", timeout_graceful_shutdown=5)
    finally:
        for b in batchers.values():
            b.close()
    return 0


def app_models(batchers: dict) -> list[str]:
    return [s.name for b in batchers.values() for s in b.backend.served]


def run(argv: list[str] | None = None) -> None:
    cli_main(main, argv)


if __name__ == "__main__":
    run()
