"""How well de-identification works on our test set (bench/deid_testset.py).

    python -m bench.deid_quality --out bench/results/deid_quality.json

recall (per type)   share of planted identifiers no longer present, as written, in the scrubbed dialog
over-scrubbing      share of characters changed on identifier-free medical text (our sample, eval and
                    preference dialogs), changed = length - characters difflib matches unchanged
knowledge terms     fields of data/knowledge_zh.jsonl (disease names, aliases, drugs in the treatments)
                    that the scrubber altered: must be 0
"""
from __future__ import annotations

import argparse
import difflib
import json
import sys
from collections import Counter
from pathlib import Path

from bench.deid_testset import clean_texts, knowledge_texts, make_testset
from doctorkit.deid import Deidentifier

GOALS = {"ID": 0.99, "PHONE": 0.99, "EMAIL": 0.99, "RECORD": 0.99, "INSURANCE": 0.99,
         "NAME": 0.95, "ADDRESS": 0.95, "DATE": 0.95}
MAX_OVERSCRUB = 0.01


def changed_chars(before: str, after: str) -> int:
    matcher = difflib.SequenceMatcher(None, before, after, autojunk=False)
    return len(before) - sum(block.size for block in matcher.get_matching_blocks())


def evaluate(seeds: list[int], style: str = "tag") -> dict:
    planted, removed, misses = Counter(), Counter(), []
    for seed in seeds:
        scrubber = Deidentifier(style, seed=seed)
        for row in make_testset(seed):
            text = "\n".join(m["content"] for m in scrubber.record(row["messages"], row["id"]))
            for item in row["identifiers"]:
                planted[item["type"]] += 1
                if item["value"] not in text:
                    removed[item["type"]] += 1
                elif len(misses) < 40:
                    misses.append(item)
    clean = clean_texts()
    scrubber = Deidentifier(style)
    total = sum(len(t) for t in clean)
    changed = sum(changed_chars(t, scrubber.text(t)) for t in clean)
    knowledge = knowledge_texts()
    altered = [t for t in knowledge if scrubber.text(t) != t]
    recall = {kind: round(removed[kind] / planted[kind], 4) for kind in sorted(planted)}
    return {
        "style": style, "seeds": seeds, "dialogs": len(seeds) * len(make_testset(seeds[0])),
        "identifiers": dict(sorted(planted.items())), "recall": recall,
        "over_scrubbing": {"texts": len(clean), "chars": total, "changed": changed,
                           "rate": round(changed / total, 5), "replacements": dict(scrubber.counts)},
        "knowledge_fields": len(knowledge), "knowledge_fields_altered": altered,
        "goals_met": all(recall.get(k, 0) >= goal for k, goal in GOALS.items()) and changed / total <= MAX_OVERSCRUB
                     and not altered,
        "misses": misses,
    }


def overscrub_on_file(path: str) -> dict:
    """Characters changed on a real dialog file read as training reads it (an upper bound of over-scrubbing:
    the file may hold a real identifier or two). Only figures are kept, never the text."""
    from doctorkit.data.formats import iter_file
    from doctorkit.data.readers import BadRecord
    from doctorkit.recipe import DataConfig

    scrubber, total, changed = Deidentifier("tag"), 0, 0
    for _, messages in iter_file(path, DataConfig(path=path)):
        if isinstance(messages, BadRecord):
            continue
        for before, after in zip(messages, scrubber.record(messages)):
            total += len(before["content"])
            changed += changed_chars(before["content"], after["content"])
    return {"file": Path(path).name, "chars": total, "changed": changed, "rate": round(changed / max(total, 1), 5),
            "replacements": dict(sorted(scrubber.counts.items()))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="test-set variants (300 dialogs each)")
    parser.add_argument("--style", default="tag", choices=["tag", "surrogate"])
    parser.add_argument("--out", help="write the JSON result here")
    parser.add_argument("--real", nargs="*", default=[], help="also measure over-scrubbing on these real dialog files")
    args = parser.parse_args(argv)
    result = evaluate(list(range(args.seeds)), args.style)
    result["real_files"] = [overscrub_on_file(path) for path in args.real if Path(path).is_file()]
    result["command"] = "python -m bench.deid_quality " + " ".join(argv if argv is not None else sys.argv[1:])
    print(f"{result['dialogs']} dialogs, {sum(result['identifiers'].values())} identifiers ({args.style})")
    for kind, value in result["recall"].items():
        goal = GOALS.get(kind)
        print(f"  {kind:<10} recall {value:.4f} of {result['identifiers'][kind]:>4}"
              + (f"  (goal {goal})" if goal else ""))
    over = result["over_scrubbing"]
    print(f"over-scrubbing {over['rate']:.4%} of {over['chars']} clean characters ({over['replacements']}); "
          f"knowledge fields altered {len(result['knowledge_fields_altered'])} of {result['knowledge_fields']}")
    for real in result["real_files"]:
        print(f"real file {real['file']}: {real['rate']:.4%} of {real['chars']} characters changed ({real['replacements']})")
    print("goals met" if result["goals_met"] else "goals NOT met")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
