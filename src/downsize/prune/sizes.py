"""Parameter counts of a config without allocating weights (a meta-device model), for resolving budgets."""

from __future__ import annotations

import copy
import logging

import torch


def param_count(config, **overrides) -> int:
    """Unique parameters of a model built from ``config`` with ``overrides`` (tied weights counted once)."""
    from transformers import AutoModelForCausalLM

    cfg = copy.deepcopy(config)
    for k, v in overrides.items():
        setattr(cfg, k, v)
    if "num_hidden_layers" in overrides and isinstance(getattr(cfg, "layer_types", None), list):
        cfg.layer_types = cfg.layer_types[: overrides["num_hidden_layers"]]
    level = logging.getLogger("transformers").level
    logging.getLogger("transformers").setLevel(logging.ERROR)
    try:
        with torch.device("meta"):
            m = AutoModelForCausalLM.from_config(cfg)
    finally:
        logging.getLogger("transformers").setLevel(level)
    return sum(p.numel() for p in m.parameters())


def model_params(model) -> int:
    return sum(p.numel() for p in model.parameters())
