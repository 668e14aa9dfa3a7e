"""The ``sft`` and ``lora`` stages: fine-tuning on chat data (loss on assistant tokens only); text KD from
teacher-written traces, plus logit KD where the teacher's top-k logprobs were stored.

    $ downsize sft --model runs/student --data traces.jsonl --lora-r 16 --logprob-kd 0.5 --out runs/tuned
    >>> LoraStage(data="traces.jsonl").lora.r         # `lora` is sft with adapters on by default
    16
"""

from __future__ import annotations

from typing import Optional

from downsize.stages.base import Artifact, Field, StageContext, stage
from downsize.stages.distill import LoraFields
from downsize.stages.train import TrainFields, estimate_training


class SftStage(TrainFields):
    data: str = Field(..., description="chat JSONL ({'messages': [...], 'tools': [...]}) or text, or the name of "
                                       "a generate stage")
    steps: int = Field(100, ge=1, description="optimiser steps")
    batch_size: int = Field(4, ge=1, description="conversations per step (per process)")
    seq_len: int = Field(1024, ge=8, description="conversations are cut to this many tokens")
    lr: float = Field(2e-4, gt=0, description="peak learning rate (linear warmup, then cosine to 10 %)")
    warmup_steps: int = Field(10, ge=0, description="linear warmup steps")
    student: Optional[str] = Field(None, description="the model to fine-tune (a reference or stage name); "
                                                     "default: the input model")
    lora: Optional[LoraFields] = Field(None, description="train LoRA adapters instead of all weights (merged at the end)")
    logprob_kd: float = Field(0.0, ge=0, le=1, description="weight of forward KL to the teacher's stored top-k "
                                                           "logprobs (data written with top_logprobs); 0 = CE only")


class LoraStage(SftStage):
    lora: Optional[LoraFields] = Field(LoraFields(), description="the LoRA adapters (merged at the end)")


@stage("sft", SftStage, produces="model", estimate=lambda cfg, params: estimate_training(cfg, params))
@stage("lora", LoraStage, produces="model", estimate=lambda cfg, params: estimate_training(cfg, params))
def run_sft(ctx: StageContext, cfg: SftStage) -> Artifact:
    """Supervised fine-tuning on chat JSONL (assistant tokens only), full or LoRA."""
    from downsize.distill import SFTConfig, sft
    from downsize.distill.save import read_card

    base = ctx.resolve(cfg.student) if cfg.student is not None else ctx.input_ref()
    engine = SFTConfig(train=cfg.train_config(ctx.seed, ctx.progress), max_seq_len=cfg.seq_len,
                       lora=cfg.lora.spec() if cfg.lora else None, logprob_kd=cfg.logprob_kd)
    out = sft(base, ctx.data_ref(cfg.data), engine, ctx.out, resume=ctx.resume, overwrite=ctx.overwrite)
    return Artifact("model", out, "", read_card(out).get("final_metrics", {}))
