"""data.mix: training conversations drawn from several files by ratio, e.g. medical 0.8 and general 0.2,
so tuning on medicine does not wash out general ability (forgetting; recipes/README.md has the trade-off).

The mix is as large as the sources allow without repeating a conversation: the source that is smallest
relative to its weight is used whole, the others are sampled (seeded) to keep the stated ratio.
"""
from __future__ import annotations

import random

from doctorkit.errors import DoctorKitError


def mixed_conversations(data_cfg, report, seed: int, read) -> list:
    """`read(data_cfg, path, report)` reads one file (doctorkit.data.read_conversations); counts go to report.mix."""
    sources = [(source.path, source.weight, read(data_cfg, source.path, report)) for source in data_cfg.mix]
    total_weight = sum(weight for _, weight, _ in sources)
    empty = [path for path, _, convs in sources if not convs]
    if empty:
        raise DoctorKitError(f"data.mix: {empty[0]} holds no usable conversation")
    size = min(len(convs) * total_weight / weight for _, weight, convs in sources)
    rng = random.Random(seed)
    pool, counts = [], {}
    for path, weight, convs in sources:
        take = max(1, int(size * weight / total_weight + 1e-9))
        pool += rng.sample(convs, take)
        counts[path] = {"weight": round(weight / total_weight, 4), "available": len(convs), "used": take}
    rng.shuffle(pool)
    report.mix = {"sources": counts, "total": len(pool)}
    return pool
