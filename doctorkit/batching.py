"""Length-grouped batches in random order (data.group_by_length without packing).

transformers' LengthGroupedSampler cuts a random permutation into mega-batches of 50 batches and sorts each
mega-batch by length, longest first. The batches it yields are of similar lengths (little padding), but
their ORDER is not random: within every mega-batch the model sees long samples first and short ones last.
Here the batches are built the same way and then shuffled as whole batches: as little padding, and the
lengths vary at random from step to step, like a random sampler's. Loss curves of the three orders:
bench/results/group-order-small-llama.png (python -m bench.group_order).
"""
from __future__ import annotations

import torch
from torch.utils.data import Sampler

MEGA_BATCH = 50  # batches sorted together: more is less padding, fewer distinct batch compositions


def grouped_batches(lengths: list[int], batch_size: int, generator: torch.Generator | None = None) -> list[list[int]]:
    """Batches of indices of similar length, the batches in random order."""
    order = torch.randperm(len(lengths), generator=generator).tolist()
    span = MEGA_BATCH * batch_size
    batches = []
    for start in range(0, len(order), span):
        mega = sorted(order[start:start + span], key=lambda i: lengths[i])
        batches += [mega[i:i + batch_size] for i in range(0, len(mega), batch_size)]
    shuffled = torch.randperm(len(batches), generator=generator).tolist()
    return [batches[i] for i in shuffled]


class ShuffledLengthGroups(Sampler):
    """Indices whose consecutive `batch_size` slices are length groups, the groups in random order.

    Draws from torch's global generator (seeded by the trainer's set_seed) on every epoch, as
    transformers' own samplers do, so each epoch groups and orders anew and every DDP rank agrees.
    Only the last group can be short, and only at the end of an epoch.
    """

    def __init__(self, lengths: list[int], batch_size: int):
        self.lengths, self.batch_size = list(lengths), batch_size

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self):
        batches = grouped_batches(self.lengths, self.batch_size)
        short = [b for b in batches if len(b) < self.batch_size]  # keep every slice a whole group
        return iter([i for b in batches if len(b) == self.batch_size for i in b] + [i for b in short for i in b])
