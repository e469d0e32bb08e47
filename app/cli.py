"""`python -m app RUN_DIR [--host 127.0.0.1] [--port N] [--auth user:pass] [--share] [--knowledge KB]`

Serves the Gradio demo for a run directory (LoRA / QLoRA / P-tuning v2) or an exported model folder.
Safe by default for a hospital network: binds 127.0.0.1, no analytics, a queue that serves one generation
at a time, caps on every field, the prompt's tokens and each generation's time (app.engine.Limits), and a
not-medical-advice notice. The model is loaded once, at start.
Auth: --auth user:pass or the DOCTORKIT_AUTH environment variable (kept out of the shell history).
"""
from __future__ import annotations

import argparse
import os
import socket
import sys

from app.limits import Limits
from doctorkit import argtypes, sampling
from doctorkit.errors import DoctorKitError, cli_main

AUTH_ENV = "DOCTORKIT_AUTH"


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m app", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", help="run directory written by doctorkit.train, or an exported model folder")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0 = every network; default local only)")
    parser.add_argument("--port", type=argtypes.port_number, default=7860)
    parser.add_argument("--auth", help=f"user:pass required to open the page (or set {AUTH_ENV})")
    parser.add_argument("--share", action="store_true", help="also publish a temporary public gradio.live link "
                                                             "(needs internet and --auth)")
    parser.add_argument("--knowledge", help="knowledge-base JSONL to ground answers (default: the recipe's data.knowledge)")
    parser.add_argument("--max-input-chars", type=argtypes.positive_int, default=2000, help="longest accepted message (default 2000)")
    parser.add_argument("--max-new-tokens", type=argtypes.positive_int, default=sampling.MAX_NEW_TOKENS,
                        help="initial reply length limit (a slider)")
    parser.add_argument("--queue-size", type=argtypes.positive_int, default=32, help="requests allowed to wait (default 32)")
    limits = Limits()  # caps that keep one request from starving everyone (app.engine.Limits)
    parser.add_argument("--max-system-chars", type=argtypes.positive_int, default=limits.max_system_chars,
                        help=f"longest accepted system prompt (default {limits.max_system_chars})")
    parser.add_argument("--max-history-chars", type=argtypes.positive_int, default=limits.max_history_chars,
                        help=f"earlier turns kept, in characters; older ones are dropped (default {limits.max_history_chars})")
    parser.add_argument("--max-prompt-tokens", type=argtypes.positive_int, default=limits.max_prompt_tokens,
                        help=f"longest prompt in tokens: system + history + message (default {limits.max_prompt_tokens})")
    parser.add_argument("--max-seconds", type=argtypes.float_in(0.0, None, low_open=True), default=limits.max_seconds,
                        help=f"time limit of one generation (default {limits.max_seconds:g})")
    return parser.parse_args(argv)


def parse_auth(text: str | None) -> tuple[str, str] | None:
    if not text:
        return None
    user, sep, password = text.partition(":")
    if not sep or not user or not password:
        raise DoctorKitError(f"--auth / {AUTH_ENV}: expected user:password")
    return user, password


def check_port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError as err:
            raise DoctorKitError(f"{host}:{port}: cannot listen there ({err.strerror}); "
                                 f"is another demo running? choose another --port") from None


def knowledge_settings(path: str | None, recipe):
    from doctorkit.knowledge import KnowledgeSettings
    from doctorkit.recipe import DataConfig

    data = recipe.data if recipe is not None else DataConfig()
    settings = KnowledgeSettings.from_data_config(data.model_copy(update={"knowledge": path or data.knowledge}))
    if settings is not None:
        from doctorkit.knowledge.cli import load_reporting
        load_reporting(settings.path)   # fail early, one line, before the model loads; warns on bad lines
    return settings


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"   # before gradio is imported: no telemetry at all
    auth = parse_auth(args.auth or os.environ.get(AUTH_ENV))
    if args.share and auth is None:
        raise DoctorKitError("--share makes the demo reachable from the internet; set --auth user:pass "
                             f"(or {AUTH_ENV}) too")
    check_port_free(args.host, args.port)

    from doctorkit.rundir import is_exported_model, load_run, read_run_recipe
    if not is_exported_model(args.run_dir):
        recipe = read_run_recipe(args.run_dir)   # missing / half-written run: one line, before the slow part
    else:
        recipe = None
    knowledge = knowledge_settings(args.knowledge, recipe)
    print(f"loading {args.run_dir} ...", flush=True)
    run = load_run(args.run_dir)

    from app.engine import Engine
    from app.ui import THEME, _default_system, build_demo

    limits = Limits(max_input_chars=args.max_input_chars, max_system_chars=args.max_system_chars,
                    max_history_chars=args.max_history_chars, max_prompt_tokens=args.max_prompt_tokens,
                    max_seconds=args.max_seconds)
    engine = Engine(run, knowledge, limits)
    limits.max_system_chars = max(limits.max_system_chars, len(_default_system(engine)))  # the run's own prompt fits
    demo = build_demo(engine, run_name=os.path.basename(os.path.abspath(args.run_dir)), max_new_tokens=args.max_new_tokens)
    # concurrency 1: one model answers one request at a time (see Engine.lock); others wait in the queue.
    demo.queue(default_concurrency_limit=1, max_size=args.queue_size)
    if args.host not in ("127.0.0.1", "localhost", "::1") and auth is None:
        print(f"warning: listening on {args.host} without --auth: anyone on that network can use the demo",
              file=sys.stderr)
    demo.launch(server_name=args.host, server_port=args.port, auth=auth, share=args.share, ssr_mode=False, theme=THEME,
                show_error=True, mcp_server=False, pwa=False, quiet=False)
    return 0


def run(argv: list[str] | None = None) -> None:
    cli_main(main, argv)


if __name__ == "__main__":
    run()
