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
import logging
from pathlib import Path

from downsize.errors import DownsizeError

from downsize.stages.base import (ARTIFACT_KINDS, STAGES, Artifact, StageConfig, StageContext, StageSpec,  # noqa: F401
                                  stage)

__all__ = ["STAGES", "StageSpec", "stage", "Artifact", "StageConfig", "StageContext", "run_stage"]
MODULES = ("prune", "distill", "train", "sft", "merge", "generate", "quantize", "export", "eval")


def run_stage(kind: str, ctx: StageContext | None = None, cfg: StageConfig | None = None, *,
              out: str | Path | None = None, model: str | None = None, teacher: str | None = None,
              data: str | None = None, seed: int = 0, resume: bool = False, **fields) -> Artifact:
    """Run one stage outside a recipe (the Python API): ``cfg`` or its fields as keywords, validated by the
    stage's config, the same class the recipe schema and the CLI options come from.

    ``model`` is the input model, ``out`` where the result goes; ``teacher``/``data`` play the recipe's part.
    """
    spec = STAGES[kind]
    if cfg is None:
        cfg = spec.config(**fields)
    elif fields:
        cfg = spec.config(**{**cfg.model_dump(), **fields})
    if ctx is None:
        if out is None:
            raise DownsizeError(f"run_stage({kind!r}) needs out=: where to write the result")
        ctx = StageContext(out=Path(out), teacher=teacher or getattr(cfg, "teacher", None),
                           data=data or getattr(cfg, "data", None) or "zoo:stdlib", seed=seed,
                           artifacts={"teacher": Artifact("model", None)}, input_model=model, resume=resume,
                           log=logging.getLogger(f"downsize.{kind}").info)
    return spec.run(ctx, cfg)


for _m in MODULES:
    importlib.import_module(f"downsize.stages.{_m}")
