"""downsize: turn a large language model into a smaller one that keeps its skill.

    $ downsize zoo list
    $ downsize eval zoo:coder-teacher --data zoo:stdlib
    >>> import downsize
    >>> round(downsize.evaluate("zoo:coder-teacher-qwen", "zoo:stdlib", max_tokens=2048)["perplexity"], 1) > 1
    True
    >>> art = downsize.run_stage("prune", model="zoo:coder-teacher-qwen", out="pruned", method="width",
    ...                          targets="ffn=256", calib_samples=4, seq_len=64)   # the prune stage's own fields
    >>> art.kind
    'model'

The names below are the Python API (docs/api.md walks through prune -> distill -> export -> evaluate).
They are loaded on first use, so ``import downsize`` (and ``downsize --version``) stays fast.
The stage functions ``downsize.prune.prune`` and ``downsize.distill.distill`` live in their
subpackages, whose names they share.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# name -> "module:attribute"; one line per public name, documented in docs/api.md
_API = {
    "run_stage": "downsize.stages:run_stage",
    "STAGES": "downsize.stages:STAGES",
    "prune_ref": "downsize.prune:prune_ref",
    "PruneConfig": "downsize.prune:PruneConfig",
    "DistillConfig": "downsize.distill:DistillConfig",
    "LossSpec": "downsize.distill:LossSpec",
    "OnPolicy": "downsize.distill:OnPolicy",
    "StudentSpec": "downsize.distill:StudentSpec",
    "SFTConfig": "downsize.distill:SFTConfig",
    "sft": "downsize.distill:sft",
    "cache_teacher": "downsize.distill:cache_teacher",
    "TrainConfig": "downsize.train.loop:TrainConfig",
    "LoraSpec": "downsize.train.loop:LoraSpec",
    "export_gguf": "downsize.export.gguf:export_gguf",
    "export_ollama": "downsize.export.ollama:export_ollama",
    "convert_gguf": "downsize.export.ollama:convert_gguf",
    "evaluate": "downsize.eval.run:evaluate",
    "compare_models": "downsize.eval.compare:compare_models",
    "run_recipe": "downsize.pipeline:run_recipe",
    "load_recipe": "downsize.recipe:load_recipe",
    "parse_recipe": "downsize.recipe:parse_recipe",
    "push_to_hub": "downsize.hub:push_to_hub",
    "push_run": "downsize.hub:push_run",
    "load_model": "downsize.models.refs:load_model",
    "DownsizeError": "downsize.errors:DownsizeError",
}
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    target = _API.get(name)
    if target is None:
        raise AttributeError(f"module 'downsize' has no attribute {name!r}")
    module, attr = target.split(":")
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_API})
