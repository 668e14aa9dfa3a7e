"""What every stage shares: its frozen config base, the artifact it returns and the context it runs in.

    >>> from downsize.stages.base import StageConfig
    >>> class Demo(StageConfig):
    ...     steps: int = Field(10, ge=1, description="optimiser steps")
    >>> Demo(steps=5).steps
    5

A stage config is the one home of a stage's fields: their types, defaults, bounds and help. The
recipe schema, the CLI options of the matching command, ``downsize plan`` and the Python API are all
derived from it (``downsize.stages.STAGES``). ``problems()`` holds the cross-field rules; they run on
construction, so a recipe, a command line and a Python call are refused by the same checks, and
every problem is reported at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from downsize.registry import Registry

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["Artifact", "Field", "STAGES", "StageConfig", "StageContext", "StageSpec", "WIRING_FIELDS", "stage"]

# Fields that place a stage inside a recipe (not settings of the work itself): the CLI takes the input model as
# its argument instead, so these two are the only config fields a command does not offer as options.
WIRING_FIELDS = ("name", "input")


class StageConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: Optional[str] = Field(None, description="stage name used by later stages' `input`; default: the kind")
    input: Optional[str] = Field(None, description="the stage (or 'teacher') whose model this stage reads; "
                                                   "default: the latest model")

    def problems(self) -> list[str]:
        """Cross-field rules: every violated one as ``"field: what is wrong"`` (none by default)."""
        return []

    @model_validator(mode="after")
    def _check(self):
        found = self.problems()
        if found:
            raise ValueError("\n".join(found))
        return self

    def settings(self) -> dict[str, Any]:
        """The fields of the work itself (not the recipe wiring), as JSON-ready values."""
        return self.model_dump(mode="json", exclude=set(WIRING_FIELDS))


@dataclass
class Artifact:
    """What a stage produced: a model directory, a GGUF file, data, or only metrics."""

    kind: str  # one of ARTIFACT_KINDS
    path: Path | None
    hash: str = ""
    metrics: dict = field(default_factory=dict)


ARTIFACT_KINDS = ("model", "gguf", "data", "metrics")


@dataclass
class StageContext:
    """Where a stage runs: inside a recipe (``downsize run``) or alone (its CLI command, the Python API).

    ``out`` is where the stage writes its result (a directory or a file, by stage kind); ``work_dir``
    holds checkpoints of training stages; ``artifacts`` are earlier stages' results by name, with
    ``"teacher"``; ``recipe`` is None outside a recipe.
    """

    out: Path
    teacher: str | None = None
    data: str = "zoo:stdlib"
    seed: int = 0
    artifacts: dict[str, Artifact] = field(default_factory=dict)
    input_name: str | None = None
    input_model: str | None = None  # outside a recipe: the model reference the command was given
    resume: bool = False
    overwrite: bool = False
    progress: bool = True
    log: Callable[[str], None] = print
    stage_name: str = ""
    stage_dir: Path | None = None
    run_dir: Path | None = None
    recipe: Any = None  # downsize.recipe.Recipe inside a run

    @property
    def work_dir(self) -> Path:
        """Checkpoints of a training stage: OUT.work beside OUT (an interrupted stage resumes from them)."""
        return self.out.with_name(self.out.name + ".work")

    def input_artifact(self) -> Artifact:
        """The artifact this stage reads: its `input`, else the latest model produced, else the teacher."""
        if self.input_name:
            return self.artifacts[self.input_name]
        for a in reversed(list(self.artifacts.values())):
            if a.kind == "model":
                return a
        return self.artifacts["teacher"]

    def input_ref(self) -> str:
        """The input model as a reference string (a path, or the teacher's reference)."""
        if self.input_model is not None:
            return self.input_model
        return self.ref_of(self.input_artifact())

    def ref_of(self, a: Artifact) -> str:
        if a.path is not None:
            return str(a.path)
        if self.teacher is None:
            from downsize.errors import DownsizeError

            raise DownsizeError("this stage reads the teacher, but no teacher was given", hint="pass --teacher")
        return self.teacher

    def resolve(self, ref: str | None) -> str | None:
        """A reference that may name an earlier stage: that stage's output path, else the reference itself."""
        if ref is None:
            return None
        art = self.artifacts.get(ref)
        return self.ref_of(art) if art is not None else ref

    def data_ref(self, own: str | None = None) -> str:
        """The stage's data reference (its own `data`, else the recipe's), a stage name standing for its output."""
        return self.resolve(own or self.data)

    def latest_gguf(self) -> Artifact | None:
        for a in reversed(list(self.artifacts.values())):
            if a.kind == "gguf":
                return a
        return None


# ---- the registry of stage kinds --------------------------------------------------------------------------------

@dataclass(frozen=True)
class StageSpec:
    kind: str
    config: type[StageConfig]
    run: Callable[[StageContext, StageConfig], Artifact]
    produces: str  # what the stage returns: one of ARTIFACT_KINDS
    estimate: Callable | None = None  # estimate(cfg, params: int) -> str, a cost line for `downsize plan`
    output: Callable | None = None  # output(cfg) -> its path inside the stage's folder ("" = the folder itself)

    def output_name(self, cfg: StageConfig) -> str:
        if self.output is not None:
            return self.output(cfg)
        return {"model": "output", "data": "data.jsonl", "metrics": "metrics.json"}.get(self.produces, "output")

    @property
    def summary(self) -> str:
        return (self.run.__doc__ or "").strip().split("\n")[0]


STAGES: Registry[StageSpec] = Registry("stage kind", StageSpec)


def stage(kind: str, config: type[StageConfig], produces: str, *, aliases: tuple[str, ...] = (),
          estimate: Callable | None = None, output: Callable | None = None):
    """Register ``run(ctx, cfg)`` as stage ``kind`` (and each alias) with its config class."""
    if produces not in ARTIFACT_KINDS:
        raise ValueError(f"produces must be one of {ARTIFACT_KINDS}, got {produces!r}")

    def deco(fn):
        for k in (kind, *aliases):
            STAGES.add(k, StageSpec(k, config, fn, produces, estimate, output))
        return fn
    return deco
