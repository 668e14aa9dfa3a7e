"""Subprocess entry for loop tests: a tiny Llama trained on a saved token stream.

    python tests/train/runner.py TOKDIR STREAM.npy OUT STEPS BATCH [--resume] [--kill-at N] [--lora]
Run under torchrun for several processes; writes OUT/checkpoints and OUT/metrics.jsonl.
"""

import os
import signal
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
torch.set_num_threads(1)


def main(argv):
    from transformers import AutoTokenizer

    from tiny_models import make_tiny_model
    from downsize.data.packing import PackedDataset
    from downsize.train.loop import LoraSpec, TrainConfig, apply_lora, lm_loss, train

    tok_dir, stream, out, steps, bs = argv[:5]
    kill_at = int(argv[argv.index("--kill-at") + 1]) if "--kill-at" in argv else None
    tok = AutoTokenizer.from_pretrained(tok_dir)
    model = make_tiny_model("llama", tok, seed=0)
    if "--lora" in argv:
        model = apply_lora(model, LoraSpec(r=4))
    data = PackedDataset(np.load(stream), seq_len=32, seed=0)
    calls = {"n": 0}

    def loss_fn(m, batch):
        calls["n"] += 1
        if kill_at is not None and calls["n"] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)  # a hard crash: no cleanup, no final checkpoint
        return lm_loss(m, batch)

    mp = os.environ.get("RUNNER_MP", "bf16")
    cfg = TrainConfig(steps=int(steps), batch_size=int(bs), lr=3e-3, warmup_steps=2, checkpoint_every=2, log_every=1,
                      progress=False, mixed_precision=mp)
    train(model, loss_fn, data, cfg, out, resume="--resume" in argv)


if __name__ == "__main__":
    main(sys.argv[1:])
