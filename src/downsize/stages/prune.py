"""The ``prune`` stage: depth, width (Minitron), unstructured and N:M (magnitude, Wanda, SparseGPT), low-rank.

    $ downsize prune zoo:coder-teacher --method width --targets "ffn=512 heads=4 hidden=256" --out pruned/
    >>> PruneStage(method="wanda", sparsity=0.5).calib_samples
    64
    >>> PruneStage(method="wanda")
    Traceback (most recent call last):
    ...
    pydantic_core._pydantic_core.ValidationError: 1 validation error for PruneStage
    ...
"""

from __future__ import annotations

from typing import Literal, Optional, Union

from pydantic import field_validator

from downsize.errors import DownsizeError
from downsize.stages.base import Artifact, Field, StageConfig, StageContext, stage


def _methods() -> tuple[str, ...]:
    from downsize.prune.registry import METHODS, ensure_loaded

    ensure_loaded()
    return tuple(METHODS)


class PruneStage(StageConfig):
    method: Literal[_methods()] = Field(..., description="how to prune: " + ", ".join(_methods()))  # type: ignore[valid-type]
    targets: dict[str, Union[int, float]] = Field(
        default_factory=dict, description="sizes: 'ffn=1024 heads=4 hidden=256', 'params=0.5', 'remove=2', "
                                          "'rank=64' (a mapping in a recipe)")
    sparsity: Optional[float] = Field(None, gt=0, lt=1, description="unstructured ratio of zeros, e.g. 0.5")
    nm: Optional[str] = Field(None, description="N:M pattern: N zeros in every M weights, e.g. 2:4")
    calib: Optional[str] = Field(None, description="calibration data reference; default: the recipe's data "
                                                   "(zoo:stdlib on the command line)")
    calib_samples: int = Field(64, ge=1, description="calibration sequences")
    seq_len: int = Field(256, ge=8, description="calibration sequence length")
    depth_score: Literal["bi", "ppl"] = Field("bi", description="depth: bi (block influence) or ppl (perplexity "
                                                                "increase when a block is dropped)")
    batch_size: int = Field(8, ge=1, description="calibration sequences per forward")
    round_to: int = Field(32, ge=1, description="sizes resolved from a params budget are multiples of this")
    norm_correction: bool = Field(True, description="width: rescale norms for the RMS lost with pruned channels")
    blocksize: int = Field(128, ge=1, description="SparseGPT column block")
    damp: float = Field(0.01, ge=0, lt=1, description="SparseGPT / low-rank dampening, a fraction of mean(diag(H))")

    @field_validator("targets", mode="before")
    @classmethod
    def _parse_targets(cls, v):
        from downsize.prune.config import parse_targets

        return parse_targets(v) if isinstance(v, str) else v

    def engine_config(self, seed: int):
        from downsize.prune import PruneConfig

        return PruneConfig(method=self.method, targets=dict(self.targets), sparsity=self.sparsity, nm=self.nm,
                           depth_score=self.depth_score, calib_samples=self.calib_samples,
                           calib_seq_len=self.seq_len, batch_size=self.batch_size, seed=seed, round_to=self.round_to,
                           norm_correction=self.norm_correction, blocksize=self.blocksize, damp=self.damp)

    def problems(self) -> list[str]:
        try:  # the prune engine's own rules (targets per method, sparsity xor N:M, …), not a copy
            self.engine_config(seed=0)
        except DownsizeError as e:
            return [e.message + (f" ({e.hint})" if e.hint else "")]
        return []


def _estimate(cfg: PruneStage, params: int) -> str:
    return f"{cfg.calib_samples} calibration sequences × {cfg.seq_len} tokens, input ~{params / 1e6:.1f}M params"


@stage("prune", PruneStage, produces="model", estimate=_estimate)
def run_prune(ctx: StageContext, cfg: PruneStage) -> Artifact:
    """Prune the input model; the result is a normal Hugging Face model."""
    from downsize.prune import prune_ref

    report = prune_ref(ctx.input_ref(), ctx.out, cfg.engine_config(ctx.seed), ctx.data_ref(cfg.calib),
                       overwrite=ctx.overwrite)
    return Artifact("model", ctx.out, "", {"params": report["params"], "wall_s": report["wall_s"]})
