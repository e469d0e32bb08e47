"""The privacy step of training data preparation (doctorkit.data.prepare calls `privacy_step`).

data.deid: true      every conversation (train and eval) is de-identified before tokenizing; the data
                     report counts replacements by type, so `data preview` / `data stats` show it
data.canaries: K     K canaries inserted into the train split (data.canary_repeats copies each) and K
                     controls; training writes all to RUN_DIR/canaries.jsonl (doctorkit/deid/canary.py)
"""
from __future__ import annotations

from doctorkit.deid import Deidentifier
from doctorkit.deid.canary import insert, make_canaries


def privacy_step(data_cfg, seed: int, train: list, eval_: list, report) -> tuple[list, list, list[dict]]:
    """(train, eval, canaries) after de-identification and canary insertion, as the recipe asks."""
    if data_cfg.deid:
        scrubber = Deidentifier(data_cfg.deid_style, seed=seed)
        train = [scrubber.record(messages, f"train-{i}") for i, messages in enumerate(train)]
        eval_ = [scrubber.record(messages, f"eval-{i}") for i, messages in enumerate(eval_)]
        report.deid_replacements = dict(sorted(scrubber.counts.items()))
        report.deid_records = scrubber.records_touched
    canaries = []
    if data_cfg.canaries:
        # inserted after de-identification: a canary is a fake identifier that must stay as written
        canaries = make_canaries(data_cfg.canaries, data_cfg.canary_repeats, seed)
        train = insert(train, canaries, seed)
        report.canaries = sum(c["repeats"] for c in canaries)
    return train, eval_, canaries
