"""What data preparation used, skipped and cut, for the terminal, metrics.json and `data stats`."""
from __future__ import annotations

import dataclasses
from collections import Counter

import numpy as np

MAX_PROBLEMS = 200  # file:line notes kept; a huge broken file should not fill memory with them


@dataclasses.dataclass
class DataReport:
    samples_used: int = 0                      # training samples after every skip
    samples_skipped: dict[str, int] = dataclasses.field(default_factory=dict)  # reason -> count (train + eval)
    train_tokens: int = 0
    supervised_tokens: int = 0                 # train tokens whose label is not -100
    eval_samples: int = 0
    eval_tokens: int = 0
    truncated: int = 0                         # samples cut to train.max_seq_len (train + eval)
    lengths: list[int] = dataclasses.field(default_factory=list)       # token lengths of train samples
    eval_lengths: list[int] = dataclasses.field(default_factory=list)
    problems: list[str] = dataclasses.field(default_factory=list)      # "file:line: reason", first ones
    mix: dict = dataclasses.field(default_factory=dict)  # data.mix: per source weight, available, used
    deid_replacements: dict[str, int] = dataclasses.field(default_factory=dict)  # data.deid: type -> count
    deid_records: int = 0                      # data.deid: conversations with at least one replacement
    canaries: int = 0                          # data.canaries: canary copies inserted into train
    csv_columns: list[str] = dataclasses.field(default_factory=list)   # per CSV file: which columns were used
    cache: str = ""                            # the cache entry the rows were loaded from ("": prepared now)

    def skip(self, reason: str, where: str | None = None, detail: str | None = None) -> None:
        counts = Counter(self.samples_skipped)
        counts[reason] += 1
        self.samples_skipped = dict(counts)
        if where and len(self.problems) < MAX_PROBLEMS:
            self.problems.append(f"{where}: {detail or reason}")

    def malformed(self, where: str, detail: str, on_error: str) -> None:
        """A record that cannot be read: counted and skipped, or the one-line error `data.on_error: fail` asks for."""
        if on_error == "fail":
            from doctorkit.errors import DoctorKitError
            raise DoctorKitError(f"{where}: {detail} (data.on_error: fail; use skip to count and go on)")
        self.skip("malformed", where, detail)

    @property
    def skipped_total(self) -> int:
        return sum(self.samples_skipped.values())

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["length_percentiles"] = percentiles(self.lengths)
        out["eval_length_percentiles"] = percentiles(self.eval_lengths)
        return out

    def summary(self) -> str:
        skipped = ", ".join(f"{reason} {n}" for reason, n in sorted(self.samples_skipped.items())) or "none"
        p = percentiles(self.lengths)
        lines = [
            f"data: {self.samples_used} train samples ({self.train_tokens:,} tokens, "
            f"{self.supervised_tokens:,} supervised), {self.eval_samples} eval samples",
            f"data: skipped {self.skipped_total} ({skipped}); truncated {self.truncated}",
            f"data: train lengths p50 {p['p50']}, p90 {p['p90']}, p99 {p['p99']}, max {p['max']} tokens",
        ]
        if self.deid_replacements or self.deid_records:
            counts = ", ".join(f"{kind} {n}" for kind, n in self.deid_replacements.items())
            lines.append(f"data: de-identified {self.deid_records} conversations ({counts})")
        if self.canaries:
            lines.append(f"data: {self.canaries} canary copies inserted (memorization check)")
        lines += [f"data: CSV columns {note}" for note in self.csv_columns]
        if self.cache:
            lines.append(f"data: loaded from the prepared-data cache {self.cache} (same files, settings, tokenizer)")
        lines += [f"  {note}" for note in self.problems[:5]]
        if self.skipped_total > 5 and len(self.problems) > 5:
            lines.append(f"  ... {self.skipped_total - 5} more skipped (python -m doctorkit.data stats RECIPE)")
        return "\n".join(lines)


def percentiles(lengths: list[int]) -> dict[str, int]:
    if not lengths:
        return {"p50": 0, "p90": 0, "p99": 0, "max": 0}
    values = np.percentile(np.asarray(lengths), [50, 90, 99])
    return {"p50": int(round(values[0])), "p90": int(round(values[1])), "p99": int(round(values[2])),
            "max": int(max(lengths))}
