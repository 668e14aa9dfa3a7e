"""Distillation: losses, teachers (online, offline top-k cache, on-policy), vocabulary alignment, SFT.

    >>> from downsize.distill import distill, DistillConfig, StudentSpec
    >>> distill("zoo:coder-teacher", StudentSpec(overrides={"num_hidden_layers": 4, "hidden_size": 192}),
    ...         "zoo:stdlib", DistillConfig(loss="fkl", steps=200), "runs/student")
"""

from downsize.distill.losses import DIVERGENCES, LossSpec, kd_loss
from downsize.distill.onpolicy import ServerSpec
from downsize.distill.teacher import TopKCacheDataset, cache_teacher
from downsize.distill.train import (DistillConfig, OnPolicy, SFTConfig, StudentSpec, assistant_labels, distill,
                                    save_model, sft)
from downsize.train.loop import LoraSpec, TrainConfig

__all__ = ["DIVERGENCES", "DistillConfig", "LoraSpec", "LossSpec", "OnPolicy", "SFTConfig", "ServerSpec", "StudentSpec",
           "TopKCacheDataset", "TrainConfig", "assistant_labels", "cache_teacher", "distill", "kd_loss", "save_model",
           "sft"]
