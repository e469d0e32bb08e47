"""`doctorkit knowledge search KB "question"`: what a question would retrieve and the exact text injected.
`doctorkit knowledge check KB`: load a KB and list its malformed lines."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from doctorkit import argtypes
from doctorkit.errors import DoctorKitError, cli_main
from doctorkit.knowledge.base import DEFAULT_THRESHOLD, KnowledgeBase
from doctorkit.knowledge.prompt import count_tokens, ground

SHOW_SKIPPED = 5   # malformed lines printed in full; the rest are counted


def load_tokenizer(name: str | None):
    """None (count characters), builtin:tiny, a run directory (its tokenizer/), or a tokenizer folder."""
    if not name:
        return None
    if not name.startswith("builtin:") and not Path(name).is_dir():
        raise DoctorKitError(f"{name}: tokenizer folder not found (give builtin:tiny, a run dir or a tokenizer dir)")
    from doctorkit.model import load_tokenizer as load   # the kit's one tokenizer loader

    return load(name, chat=False, key="--tokenizer")


def load_reporting(path: str) -> KnowledgeBase:
    kb = KnowledgeBase.load(path)
    for problem in kb.skipped[:SHOW_SKIPPED]:
        print(f"warning: skipped {problem}", file=sys.stderr)
    more = len(kb.skipped) - SHOW_SKIPPED
    if more > 0:
        print(f"warning: ... and {more} more malformed lines", file=sys.stderr)
    print(f"{path}: {len(kb.entries)} entries, {len(kb.skipped)} malformed lines skipped")
    return kb


def search(args) -> int:
    kb = load_reporting(args.kb)
    tokenizer = load_tokenizer(args.tokenizer)
    messages, used = ground([{"role": "user", "content": args.question}], kb, tokenizer, args.budget, args.k,
                            args.threshold)
    used_names = {h.entry.name for h in used}
    print(f"question: {args.question}")
    for hit in kb.search(args.question, k=max(args.k, 3), threshold=None):
        mark = "used" if hit.entry.name in used_names else "    "
        print(f"  {mark} {hit.score:6.2f}  {hit.entry.name:<8} matched: {' '.join(hit.matched[:8]) or '-'}")
    unit = "tokens" if tokenizer is not None else "characters"
    if not used:
        print(f"not grounded: no entry scored >= {args.threshold} (the prompt is sent unchanged)")
        return 0
    text = messages[0]["content"]
    print(f"grounded with {len(used)} entr{'y' if len(used) == 1 else 'ies'}: "
          f"{count_tokens(text, tokenizer)} of {args.budget} {unit}; injected system message:")
    print("-" * 40)
    print(text)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="doctorkit knowledge", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    find = sub.add_parser("search", help="show the entries and text a question would be grounded with")
    find.add_argument("kb", help="knowledge base JSONL (e.g. data/knowledge_zh.jsonl)")
    find.add_argument("question")
    find.add_argument("-k", type=argtypes.positive_int, default=3, help="at most this many entries (default 3)")
    find.add_argument("--threshold", type=argtypes.non_negative_float, default=DEFAULT_THRESHOLD,
                      help=f"minimum score to ground (default {DEFAULT_THRESHOLD})")
    find.add_argument("--budget", type=argtypes.positive_int, default=400, help="max size of the injected text (default 400)")
    find.add_argument("--tokenizer", help="count the budget in tokens: builtin:tiny, a run dir or a tokenizer dir "
                                          "(default: characters)")
    check = sub.add_parser("check", help="load a KB and report malformed lines")
    check.add_argument("kb")
    args = parser.parse_args(argv)
    if args.command == "check":
        load_reporting(args.kb)
        return 0
    return search(args)


def run(argv: list[str] | None = None) -> None:
    cli_main(main, argv)


if __name__ == "__main__":
    run()
