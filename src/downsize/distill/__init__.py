"""Distillation: losses, teachers (online, offline top-k cache, on-policy), vocabulary alignment, SFT.

    >>> from downsize.distill import LossSpec
    >>> LossSpec("jsd", beta=0.3).hyper()["beta"]
    0.3

The stage and its one config are ``downsize.stages.distill`` (``DistillStage``); this package is the
engine: ``losses`` (pure functions), ``teacher`` (online teacher, offline top-k cache), ``vocab``
(alignment), ``train`` (the KD and SFT runs on the one training loop). Names are imported on first
use, so reading a loss name or a config does not import the whole engine.
"""

from __future__ import annotations

import importlib

_NAMES = {
    "DIVERGENCES": "losses", "LossSpec": "losses", "kd_loss": "losses",
    "ServerSpec": "onpolicy", "TopKCacheDataset": "teacher", "cache_teacher": "teacher",
    "DistillConfig": "train", "OnPolicy": "train", "distill": "train",
    "SFTConfig": "supervised", "assistant_labels": "supervised", "sft": "supervised",
    "StudentSpec": "student", "save_model": "save",
}
_LOOP = {"LoraSpec", "TrainConfig"}

__all__ = sorted([*_NAMES, *_LOOP])


def __getattr__(name: str):
    if name in _NAMES:
        return getattr(importlib.import_module(f"downsize.distill.{_NAMES[name]}"), name)
    if name in _LOOP:
        return getattr(importlib.import_module("downsize.train.loop"), name)
    raise AttributeError(f"module 'downsize.distill' has no attribute {name!r}")
