"""`python -m doctorkit.deid INPUT --out OUTPUT` (or `doctorkit deid`): de-identify a dialog file.

Reads what training reads (messages / ShareGPT / Alpaca JSONL or JSON, CSV, a registered format; encoding
detected) through doctorkit.data.formats and writes messages JSONL: one line per readable record, same id,
roles and order, identifiers replaced. Unreadable records are counted with file:line, never dropped silently.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

from tqdm.auto import tqdm

from doctorkit.data import formats
from doctorkit.data.readers import BadRecord
from doctorkit.deid import Deidentifier, STYLES
from doctorkit.errors import DoctorKitError, cli_main
from doctorkit.recipe import CsvColumns

EXAMPLES = 3          # masked examples shown in the report
PROBLEMS_SHOWN = 20   # file:line notes kept in the report


def read_dialogs(path: Path, fmt: str, encoding: str, columns: CsvColumns):
    """(file:line, record id, messages or BadRecord) for every record; ids from the record's "id" field
    (CSV: the data.columns.id column is not kept by the reader, so rows are "<stem>-<index>")."""
    for index, read in enumerate(formats.read_file(path, fmt, encoding, columns, hint="pass --format")):
        raw = read.raw
        record_id = str(raw["id"]) if isinstance(raw, dict) and raw.get("id") not in (None, "") \
            else f"{path.stem}-{index}"
        yield read.where, record_id, read.messages


def deidentify_file(args) -> dict:
    source, target = Path(args.input), Path(args.out)
    if not source.is_file():
        raise DoctorKitError(f"{source}: input file not found")
    if source.resolve() == target.resolve():
        raise DoctorKitError(f"{target}: --out must not be the input file")
    scrubber = Deidentifier(args.style, seed=args.seed, keep_map=bool(args.keep_map))
    columns = CsvColumns(user=args.user_column, assistant=args.assistant_column)
    written, problems, examples, started = 0, [], [], time.time()
    skipped = Counter()
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("w", encoding="utf-8") as out:
        for where, record_id, item in tqdm(read_dialogs(source, args.format, args.encoding, columns),
                                           desc="de-identifying", unit="rec", disable=not sys.stderr.isatty()):
            if isinstance(item, BadRecord):
                skipped["malformed"] += 1
                if len(problems) < PROBLEMS_SHOWN:
                    problems.append(f"{where}: {item}")
                continue
            before = sum(scrubber.counts.values())
            messages = scrubber.record(item, record_id)
            out.write(json.dumps({"id": record_id, "messages": messages}, ensure_ascii=False) + "\n")
            written += 1
            if sum(scrubber.counts.values()) > before and len(examples) < EXAMPLES:
                changed = next(m for m, o in zip(messages, item) if m["content"] != o["content"])
                examples.append({"id": record_id, "role": changed["role"], "text": changed["content"][:200]})
    seconds = time.time() - started
    report = {
        "input": str(source), "output": str(target), "style": args.style, "seed": args.seed,
        "records_written": written, "records_touched": scrubber.records_touched,
        "records_skipped": dict(skipped), "problems": problems,
        "replacements": dict(sorted(scrubber.counts.items())), "replacements_total": sum(scrubber.counts.values()),
        "examples": examples, "seconds": round(seconds, 2),
        "records_per_s": round(written / seconds, 1) if seconds > 0 else None,
    }
    if args.keep_map:
        Path(args.keep_map).write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in scrubber.mapping),
                                       encoding="utf-8")
        report["map"] = args.keep_map
        print(f"warning: {args.keep_map} maps every replacement back to the original: it RE-IDENTIFIES the data; "
              f"keep it as protected as the input", file=sys.stderr)
    if not written:
        raise DoctorKitError(f"{source}: no readable record ({sum(skipped.values())} malformed"
                             + (f"; first: {problems[0]}" if problems else "") + ")")
    return report


def print_report(report: dict) -> None:
    skipped = sum(report["records_skipped"].values())
    print(f"deid: {report['records_written']} records -> {report['output']} ({report['style']}); "
          f"{report['records_touched']} touched, {report['replacements_total']} replacements, {skipped} skipped")
    for kind, count in report["replacements"].items():
        print(f"  {kind:<10} {count}")
    for note in report["problems"][:5]:
        print(f"  skipped {note}")
    for example in report["examples"]:
        print(f"  e.g. {example['id']} ({example['role']}): {example['text'][:80]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m doctorkit.deid", description=__doc__.splitlines()[0])
    parser.add_argument("input", help="dialog file: .jsonl / .json (messages, ShareGPT, Alpaca) or .csv")
    parser.add_argument("--out", required=True, help="messages JSONL to write")
    parser.add_argument("--style", choices=STYLES, default="tag",
                        help="tag: 【姓名1】 placeholders; surrogate: realistic fakes, dates shifted per record")
    parser.add_argument("--report", help="also write the report (counts by type, examples) as JSON here")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--keep-map", metavar="MAP.jsonl",
                        help="write (type, original, replacement) per replacement: this RE-IDENTIFIES the data")
    parser.add_argument("--seed", type=int, default=0, help="fixes surrogates and date offsets")
    parser.add_argument("--format", default="auto", choices=formats.choices())
    parser.add_argument("--encoding", default="auto", help="auto detects (UTF-8, GB18030, ...)")
    parser.add_argument("--user-column", default="question", help="CSV: the patient's column")
    parser.add_argument("--assistant-column", default="answer", help="CSV: the doctor's column")
    args = parser.parse_args(argv)
    report = deidentify_file(args)
    if args.report:
        Path(args.report).write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    if args.json:
        print(json.dumps(report, ensure_ascii=False, indent=2))
    else:
        print_report(report)
    return 0


def run(argv: list[str] | None = None) -> None:
    cli_main(main, argv)
