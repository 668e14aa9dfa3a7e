"""The ``merge`` stage: fold LoRA adapters into full weights.

    $ downsize run recipes/tool-use-30b-to-7b.yaml      # lora → merge → quantize → export
    >>> MergeStage().settings()
    {}

distill and sft already save merged weights, so an input without adapter files passes through
unchanged (and the stage says so).
"""

from __future__ import annotations

from downsize.stages.base import Artifact, StageConfig, StageContext, stage

ADAPTER_CONFIG = "adapter_config.json"


class MergeStage(StageConfig):
    pass


@stage("merge", MergeStage, produces="model", estimate=lambda cfg, params: f"reads ~{params * 2 / 2**20:.0f} MB")
def run_merge(ctx: StageContext, cfg: MergeStage) -> Artifact:
    """Fold LoRA adapters into the base weights (a pass-through for full weights)."""
    src = ctx.input_artifact()
    path = src.path
    if path is not None and (path / ADAPTER_CONFIG).exists():
        from peft import AutoPeftModelForCausalLM

        from downsize.distill.save import save_model
        from downsize.models.refs import load_tokenizer

        model = AutoPeftModelForCausalLM.from_pretrained(str(path)).merge_and_unload()
        out = save_model(model, load_tokenizer(str(path)), ctx.out, {"name": ctx.stage_name or "merge",
                                                                      "stage": "merge", "adapter": str(path)})
        return Artifact("model", out, "", {"merged": True})
    ctx.log(f"{ctx.stage_name or 'merge'}: {path} has no LoRA adapter files; it is already full weights")
    return Artifact("model", path, "", {"merged": False, "note": "input already held merged weights"})
