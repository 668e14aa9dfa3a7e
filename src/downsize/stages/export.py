"""The ``export`` stage (``downsize export ollama``): a GGUF plus an Ollama Modelfile whose template is converted
from the model's chat template; ``ollama create`` when Ollama is installed.

    $ downsize export ollama runs/student --name coder-mini --out ollama/
    >>> ExportStage(model_name="coder-mini").quant is None       # in a recipe: reuse the run's latest GGUF
    True

In a recipe the stage reads the latest GGUF of the run (or its `input`); with `quant` set, or with no
GGUF before it, it converts the input model at `quant` (Q4_K_M by default). The GGUF is hard-linked into
the stage's folder so the Modelfile's FROM stays relative and the run directory can be copied elsewhere.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Literal, Optional

from downsize.export.quantize import QUANT_TYPES
from downsize.stages.base import Artifact, Field, StageContext, stage
from downsize.stages.quantize import QuantizeStage, push, quantize_model

DEFAULT_QUANT = "Q4_K_M"
MODELFILE = "Modelfile"


class ExportStage(QuantizeStage):
    model_name: Optional[str] = Field(None, description="the Ollama model name, e.g. coder-mini; default: the "
                                                        "recipe's name")
    quant: Optional[Literal[tuple(QUANT_TYPES)]] = Field(  # type: ignore[valid-type]
        None, description=f"GGUF type; default: the run's latest GGUF, else {DEFAULT_QUANT}")
    template_style: Optional[str] = Field(None, description="force a hand-written chat format instead of the "
                                                            "translated TEMPLATE (no tool calling): chatml, llama3, "
                                                            "mistral, gemma, phi3")
    template_file: Optional[str] = Field(None, description="a Go TEMPLATE file to write into the Modelfile as is "
                                                           "(instead of the translated one)")
    num_ctx: Optional[int] = Field(None, ge=1, description="PARAMETER num_ctx (default: the model's context length)")
    create: bool = Field(True, description="run `ollama create` when ollama is on PATH")


def gguf_name(model_name: str, quant: str) -> str:
    return f"{model_name.replace(':', '-').replace('/', '-')}.{quant.lower()}.gguf"


def _link(src: Path, dest: Path) -> None:
    if dest.exists():
        return
    try:
        os.link(src, dest)
    except OSError:  # another filesystem
        shutil.copy2(src, dest)


@stage("export", ExportStage, produces="gguf", output=lambda cfg: "",
       estimate=lambda cfg, params: "a Modelfile" + ("" if cfg.quant is None else f" and a {cfg.quant} GGUF"))
def run_export(ctx: StageContext, cfg: ExportStage) -> Artifact:
    """A GGUF plus an Ollama Modelfile (TEMPLATE translated from the Jinja chat template and checked); `ollama create` when installed."""
    from downsize.errors import DownsizeError
    from downsize.export.ollama import convert_gguf

    name = cfg.model_name or (ctx.recipe.name if ctx.recipe is not None else None)
    if not name:
        raise DownsizeError("the export needs an Ollama model name", hint="pass --model-name, e.g. coder-mini")
    from downsize.io import KIND_OLLAMA, check_output, mark_dir

    out_dir = ctx.out
    check_output(out_dir, KIND_OLLAMA, ctx.overwrite)  # a folder of the user's is not written into
    out_dir.mkdir(parents=True, exist_ok=True)
    mark_dir(out_dir, KIND_OLLAMA)
    src = ctx.artifacts.get(cfg.input) if cfg.input else (ctx.latest_gguf() if cfg.quant is None else None)
    if src is not None and src.kind == "gguf":
        gguf = out_dir / gguf_name(name, Path(src.path).stem.rsplit("-", 1)[-1])
        _link(Path(src.path), gguf)
    else:
        quant = cfg.quant or DEFAULT_QUANT
        gguf = out_dir / gguf_name(name, quant)
        quantize_model(ctx, cfg.model_copy(update={"quant": quant}), ctx.input_ref(), gguf)
    info = convert_gguf(gguf, name, out_dir, template_style=cfg.template_style, num_ctx=cfg.num_ctx, create=cfg.create,
                        template_file_path=cfg.template_file, overwrite=ctx.overwrite)
    base = ctx.run_dir or Path.cwd()
    modelfile = Path(os.path.relpath(info["modelfile"], base))
    hub = push(ctx, cfg, [gguf], info["modelfile"]) if cfg.push_to_hub else None
    return Artifact("gguf", gguf, "", {"hub": hub,"gguf": os.path.relpath(gguf, base), "modelfile": str(modelfile),
                                       "template_style": info["template_style"], "stops": info["stops"],
                                       "tools": info.get("tools"), "template_fallback": info.get("fallback"),
                                       "ollama_name": name, "ollama_command": f"ollama create {name} -f {modelfile}",
                                       "ollama_created": info["created"]})
