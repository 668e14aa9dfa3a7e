"""The stage kinds of a recipe, one module each, found in one registry.

    >>> from downsize.stages import STAGES
    >>> sorted(STAGES)
    ['distill', 'eval', 'export', 'generate', 'lora', 'merge', 'prune', 'quantize', 'sft', 'train']
    >>> spec = STAGES["prune"]
    >>> spec.config(method="wanda", sparsity=0.5).calib_samples      # the one default, shared by recipe and CLI
    64

A stage module defines a frozen config (``downsize.stages.base.StageConfig``) and a plain function
``run(ctx, cfg) -> Artifact``, registered with ``@stage(kind, Config, produces=...)``. Everything
else is derived from that: the recipe schema (``downsize.recipe``), the CLI command's options
(``downsize.cli``), ``downsize plan`` (``estimate``) and the Python API (``downsize.api``). A new
stage kind is one new module here, listed in ``MODULES``.
"""

from __future__ import annotations

import importlib

from downsize.stages.base import (ARTIFACT_KINDS, STAGES, Artifact, StageConfig, StageContext, StageSpec,  # noqa: F401
                                  stage)

__all__ = ["STAGES", "StageSpec", "stage", "Artifact", "StageConfig", "StageContext", "run_stage"]
MODULES = ("prune", "distill", "train", "sft", "merge", "generate", "quantize", "export", "eval")


def run_stage(kind: str, ctx: StageContext, cfg: StageConfig | None = None, **fields) -> Artifact:
    """Run one stage outside a recipe: ``cfg`` or its fields as keywords (validated by the stage's config)."""
    spec = STAGES[kind]
    if cfg is None:
        cfg = spec.config(**fields)
    elif fields:
        cfg = cfg.model_copy(update=fields)
        cfg = spec.config(**cfg.model_dump())
    return spec.run(ctx, cfg)


for _m in MODULES:
    importlib.import_module(f"downsize.stages.{_m}")
