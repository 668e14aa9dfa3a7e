"""The ``quantize`` stage (``downsize export gguf``): a model to GGUF of one type, K-quants with an importance
matrix from calibration data and row scales corrected for the quantizer's shrinkage.

    $ downsize export gguf runs/student --quant Q4_K_M --out student-q4_k_m.gguf
    >>> QuantizeStage(quant="IQ4_XS").imatrix
    'auto'
"""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import field_validator

from downsize.export.quantize import QUANT_TYPES
from downsize.stages.base import Artifact, Field, StageConfig, StageContext, stage

# Types written without llama.cpp's quantizer; an importance matrix changes nothing for them.
FLOAT_TYPES = ("F32", "F16", "BF16", "Q8_0")


class QuantizeStage(StageConfig):
    quant: Literal[tuple(QUANT_TYPES)] = Field("Q4_K_M", description="GGUF type: " + ", ".join(QUANT_TYPES))  # type: ignore[valid-type]
    imatrix: Optional[str] = Field("auto", description="importance matrix for the low-bit types: 'auto' computes "
                                                       "one from `calib`, a path uses that file, 'off' none")
    calib: Optional[str] = Field(None, description="calibration data for the importance matrix; default: the "
                                                   "recipe's data (zoo:stdlib on the command line)")
    calib_tokens: int = Field(16384, ge=256, description="calibration tokens for the importance matrix")
    rescale: bool = Field(True, description="undo the shrinkage of llama.cpp's block fits (row scales against the "
                                            "float model); off keeps llama.cpp's bytes")
    report: bool = Field(False, description="measure perplexity change, KL and top-1 against the float model in "
                                            "llama.cpp")
    report_data: Optional[str] = Field(None, description="data for the report; default: like calib")
    report_tokens: int = Field(8192, ge=256, description="tokens evaluated by the report")
    push_to_hub: Optional[str] = Field(None, description="also upload the result to this Hugging Face Hub repository "
                                                         "(NAMESPACE/NAME) with a generated model card; needs HF_TOKEN "
                                                         "(or `hf auth login`), HF_ENDPOINT for another Hub")

    @field_validator("quant", mode="before")
    @classmethod
    def _upper(cls, v):  # q4_k_m is Q4_K_M (llama-quantize takes both)
        return v.upper() if isinstance(v, str) else v

    @field_validator("imatrix", mode="before")
    @classmethod
    def _bool_imatrix(cls, v):  # `imatrix: true/false` in a recipe
        return {True: "auto", False: "off"}.get(v, v) if isinstance(v, bool) else v

    def wants_imatrix(self) -> bool:
        return self.imatrix not in (None, "off") and self.quant not in FLOAT_TYPES


def quantize_model(ctx: StageContext, cfg: QuantizeStage, src: str, out) -> dict:
    """Export ``src`` to ``out`` as ``cfg.quant`` (the importance matrix computed first when asked); a summary."""
    from downsize.export.api import export_with_report

    imatrix = None
    if cfg.wants_imatrix() and cfg.imatrix != "auto":
        imatrix = ctx.resolve(cfg.imatrix)
    calib = ctx.data_ref(cfg.calib) if cfg.wants_imatrix() and imatrix is None else None
    return export_with_report(src, out, cfg.quant, imatrix=imatrix, calib=calib, calib_tokens=cfg.calib_tokens,
                              seed=ctx.seed, report=cfg.report, report_data=ctx.data_ref(cfg.report_data or cfg.calib),
                              report_tokens=cfg.report_tokens, rescale=cfg.rescale, overwrite=ctx.overwrite)


def push(ctx: StageContext, cfg: QuantizeStage, ggufs: list, modelfile=None) -> str:
    """Upload the stage's files with a model card made from the input model's downsize card (when it has one)."""
    from pathlib import Path

    from downsize.hub import card_from_model, push_to_hub

    src = Path(ctx.input_ref())
    card = card_from_model(src if src.is_dir() else None, cfg.push_to_hub.split("/")[-1])
    r = push_to_hub(cfg.push_to_hub, ggufs=ggufs, modelfile=modelfile, card=card)
    ctx.log(f"pushed {len(r['files'])} files to {r['url']} (commit {r['commit'][:10]})")
    return r["url"]


def _estimate(cfg: QuantizeStage, params: int) -> str:
    return (f"streams ~{params * 2 / 2**20:.0f} MB of weights"
            + (f"; importance matrix from {cfg.calib_tokens:,} tokens" if cfg.wants_imatrix() else ""))


@stage("quantize", QuantizeStage, produces="gguf", estimate=_estimate,
       output=lambda cfg: f"model-{cfg.quant.lower()}.gguf")
def run_quantize(ctx: StageContext, cfg: QuantizeStage) -> Artifact:
    """GGUF of the input model at `quant`, with an importance matrix from the calibration data."""
    r = quantize_model(ctx, cfg, ctx.input_ref(), ctx.out)
    metrics = {"quant": cfg.quant, "size_mb": r["bytes"] / 2**20, "bits_per_weight": r["bits_per_weight"],
               "imatrix": r["imatrix"], "rescaled": "rescale" in r}
    if ctx.run_dir is not None:
        metrics["gguf"] = str(ctx.out.relative_to(ctx.run_dir))
    if cfg.push_to_hub:
        metrics["hub"] = push(ctx, cfg, [ctx.out])
    return Artifact("gguf", ctx.out, "", metrics)
