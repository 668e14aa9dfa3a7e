"""A fixed synthetic token source for loop tests (random ids, a pure function of the step): ``from train_streams
import SyntheticStream`` (tests/train is on sys.path under pytest)."""

import torch


class SyntheticStream:
    def __init__(self, n=64):
        g = torch.Generator().manual_seed(0)
        self.ids = torch.randint(0, 500, (n, 16), generator=g)

    def batch(self, step, batch_size, rank=0, world=1):
        i = (step * batch_size) % len(self.ids)
        x = self.ids[i: i + batch_size]
        return {"input_ids": x, "labels": x.clone()}
