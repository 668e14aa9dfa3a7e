"""The training fields every training stage shares, and the ``train`` stage: plain next-token cross entropy.

    $ downsize run recipes/quickstart.yaml          # its `ce-baseline` stage is a train stage
    >>> cfg = TrainStage(steps=150, lr=1e-3)
    >>> cfg.train_config(seed=0).warmup_steps
    20

``TrainFields`` is the one home of the optimiser/schedule settings that distill, sft, lora and train
take; ``train_config`` turns them into the training loop's own record (``downsize.train.loop``).
"""

from __future__ import annotations

from typing import Literal, Optional

from downsize.stages.base import Artifact, Field, StageConfig, StageContext, stage

PRECISIONS = ("auto", "bf16", "fp32", "no")


class TrainFields(StageConfig):
    steps: int = Field(200, ge=1, description="optimiser steps")
    batch_size: int = Field(8, ge=1, description="sequences per step (per process)")
    grad_accum: int = Field(1, ge=1, description="micro-batches accumulated per optimiser step")
    seq_len: int = Field(256, ge=8, description="tokens per training sequence")
    lr: float = Field(1e-3, gt=0, description="peak learning rate (linear warmup, then cosine to 10 %)")
    warmup_steps: int = Field(20, ge=0, description="linear warmup steps")
    weight_decay: float = Field(0.1, ge=0, description="AdamW weight decay (not on norms and biases)")
    max_grad_norm: float = Field(1.0, ge=0, description="gradient clipping norm (0 = off)")
    mixed_precision: Literal[PRECISIONS] = Field(  # type: ignore[valid-type]
        "auto", description="auto (bf16 where the GPU/CPU computes in bf16 natively, else fp32), bf16 or fp32 (also: no)")
    checkpoint_every: int = Field(50, ge=0, description="steps between checkpoints in OUT.work (0 = only at the end)")
    data: Optional[str] = Field(None, description="data reference or a stage name; default: the recipe's data "
                                                  "(zoo:stdlib on the command line)")
    report_to: Optional[str] = Field(None, description="log training metrics to tensorboard (OUT.work/runs/downsize), "
                                                       "wandb (pip install wandb; WANDB_MODE=offline works) or both: "
                                                       "tensorboard,wandb")

    def train_config(self, seed: int, progress: bool = True):
        from downsize.train.loop import TrainConfig

        return TrainConfig(steps=self.steps, batch_size=self.batch_size, grad_accum=self.grad_accum, lr=self.lr,
                           warmup_steps=self.warmup_steps, weight_decay=self.weight_decay,
                           max_grad_norm=self.max_grad_norm, mixed_precision=self.mixed_precision, seed=seed,
                           checkpoint_every=self.checkpoint_every, progress=progress, report_to=self.report_to or ())


class TrainStage(TrainFields):
    pass


def estimate_training(cfg: TrainFields, params: int, teacher_forward: bool = False) -> str:
    tokens = cfg.steps * cfg.batch_size * cfg.grad_accum * cfg.seq_len
    mult = 8 if teacher_forward else 6  # a teacher forward (2N per token) on top of the student's 6N
    return f"~{tokens / 1e6:.2f}M tokens, ~{mult * params * tokens / 1e12:.1f} TFLOP"


@stage("train", TrainStage, produces="model",
       estimate=lambda cfg, params: estimate_training(cfg, params))
def run_train(ctx: StageContext, cfg: TrainStage) -> Artifact:
    """Plain next-token cross entropy on the data (the no-distillation baseline)."""
    from downsize.data.packing import PackedDataset
    from downsize.data.stream import token_stream
    from downsize.distill.save import save_model
    from downsize.models.refs import load_model
    from downsize.train.loop import lm_loss, train

    from downsize.io import KIND_TRAIN, check_output
    from downsize.train.loop import check_fresh_start

    check_output(ctx.out, KIND_TRAIN, ctx.overwrite)  # before the training, not after
    check_fresh_start(ctx.work_dir, ctx.resume, ctx.overwrite)
    src = ctx.input_ref()
    model, tok = load_model(src)
    data = PackedDataset(token_stream(tok, ctx.data_ref(cfg.data), "train"), cfg.seq_len, seed=ctx.seed)
    res = train(model, lm_loss, data, cfg.train_config(ctx.seed, ctx.progress), ctx.work_dir, resume=ctx.resume)
    final = {"train_loss": res.final_loss}
    out = save_model(model, tok, ctx.out, card={
        "name": ctx.stage_name or "train", "stage": "train", "loss": "cross-entropy", "input": src,
        "data": ctx.data_ref(cfg.data), "steps": res.steps, "tokens": res.tokens, "final_metrics": final},
        overwrite=ctx.overwrite)
    return Artifact("model", out, "", {"steps": res.steps, "tokens": res.tokens, "final_loss": res.final_loss,
                                       "wall_s": res.wall_s, **final})
