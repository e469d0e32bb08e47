"""Chat with a run in the terminal: `python -m doctorkit.chat RUN_DIR [--prompt TEXT] [sampling flags]`.

Multi-turn with streaming; `--prompt` prints one reply and exits (scripts, smoke tests).
Commands inside the chat: /clear starts over, /exit (or Ctrl-D) leaves.
"""
from __future__ import annotations

import argparse
import sys

from doctorkit import argtypes, sampling
from doctorkit.errors import DoctorKitError, cli_main


def add_sampling_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--temperature", type=argtypes.non_negative_float, default=sampling.TEMPERATURE,
                        help="0 = greedy (deterministic)")
    parser.add_argument("--top-p", type=argtypes.probability, default=sampling.TOP_P, help="in (0, 1]")
    parser.add_argument("--repetition-penalty", type=argtypes.penalty, default=sampling.REPETITION_PENALTY)
    parser.add_argument("--max-new-tokens", type=argtypes.positive_int, default=sampling.MAX_NEW_TOKENS)


def sampling_from_args(args) -> dict:
    return dict(temperature=args.temperature, top_p=args.top_p, repetition_penalty=args.repetition_penalty,
                max_new_tokens=args.max_new_tokens)


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m doctorkit.chat", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", help="run directory written by doctorkit.train, or an exported model folder")
    parser.add_argument("--prompt", help="ask one question, print the reply, exit")
    parser.add_argument("--system", help="system prompt (default: the recipe's data.system_prompt)")
    parser.add_argument("--knowledge", help="knowledge-base JSONL to ground answers (default: the recipe's data.knowledge)")
    parser.add_argument("--max-prompt-tokens", type=argtypes.positive_int, default=4096,
                        help="longest prompt (system + history + message); the oldest turns are dropped to fit")
    add_sampling_arguments(parser)
    return parser.parse_args(argv)


def reply(run, history: list[dict], sampling: dict, out=None, ground=None, max_prompt_tokens: int | None = None) -> str:
    from doctorkit.generation import fit_prompt, generate_stream

    out = out or sys.stdout  # looked up per call: a default bound at import time outlives a replaced stdout
    head = history[:1] if history and history[0]["role"] == "system" else []
    found = fit_prompt(run.tokenizer, head, history[len(head):-1], history[-1:], max_prompt_tokens or 10**9,
                       ground or (lambda messages: (messages, [])))  # same grounding as training and the demo
    if found is None:
        raise DoctorKitError(f"the prompt is longer than --max-prompt-tokens {max_prompt_tokens} even without "
                             f"earlier turns; shorten the message or --system")
    prompt, hits = found
    if hits:
        out.write(f"[knowledge: {', '.join(h.entry.name for h in hits)}] ")
    pieces = []
    for piece in generate_stream(run.model, run.tokenizer, prompt, **sampling):
        pieces.append(piece)
        out.write(piece)
        out.flush()
    out.write("\n")
    return "".join(pieces).strip()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from doctorkit.rundir import load_run

    from doctorkit.knowledge import KnowledgeSettings, grounder
    from doctorkit.recipe import DataConfig

    run = load_run(args.run_dir)
    data = run.recipe.data if run.recipe else DataConfig()
    if args.knowledge:
        data = data.model_copy(update={"knowledge": args.knowledge})
    ground = grounder(KnowledgeSettings.from_data_config(data), run.tokenizer)
    sampling = sampling_from_args(args)
    system = args.system or (run.recipe.data.system_prompt if run.recipe else None)
    history: list[dict] = [{"role": "system", "content": system}] if system else []
    if args.prompt is not None:
        if not args.prompt.strip():
            print("error: --prompt is empty", file=sys.stderr)
            return 2
        reply(run, history + [{"role": "user", "content": args.prompt}], sampling, ground=ground,
              max_prompt_tokens=args.max_prompt_tokens)
        return 0
    print(f"chatting with {args.run_dir} — /clear to start over, /exit to leave. Not medical advice.")
    start = list(history)
    while True:
        try:
            text = input("you> ").strip()
        except EOFError:
            print()
            return 0
        if text in ("/exit", "/quit"):
            return 0
        if text == "/clear":
            history = list(start)
            continue
        if not text:
            continue
        history.append({"role": "user", "content": text})
        print("doctor> ", end="", flush=True)
        try:
            history.append({"role": "assistant", "content": reply(run, history, sampling, ground=ground,
                                                                  max_prompt_tokens=args.max_prompt_tokens)})
        except KeyboardInterrupt:  # stop this reply, keep the conversation
            print("\n(stopped)")
            history.pop()
        except DoctorKitError as err:  # too long even alone: say so, keep chatting
            print(f"\nerror: {err}")
            history.pop()


def run(argv: list[str] | None = None) -> None:
    cli_main(main, argv)


if __name__ == "__main__":
    run()
