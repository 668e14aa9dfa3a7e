"""Writing a trained model: a complete Hugging Face folder with its card (``distill_card.json``) and README.

    >>> from pathlib import Path
    >>> from downsize.models.refs import load_model
    >>> model, tok = load_model("zoo:coder-teacher-qwen")
    >>> out = save_model(model, tok, Path("student"), {"stage": "distill", "name": "student", "steps": 2})
    >>> sorted(p.name for p in out.iterdir())
    [...'config.json', 'distill_card.json', 'generation_config.json', 'model.safetensors', ...'tokenizer.json'...]
    >>> read_card(out)["steps"], read_card(Path("no-such-folder"))
    (2, {})
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch

from downsize.distill.teacher import unwrap
from downsize.io import KIND_DISTILL, atomic_dir, write_json_atomic, write_text_atomic
from downsize.train.loop import merge_lora

log = logging.getLogger(__name__)

CARD_JSON = "distill_card.json"
SAVE_DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32, "float16": torch.float16}


# ---- output ---------------------------------------------------------------------------------

def read_card(out: str | os.PathLike) -> dict:
    """The card a distill/sft/train output carries (``CARD_JSON``), or {} when it has none."""
    p = Path(out) / CARD_JSON
    return json.loads(p.read_text()) if p.exists() else {}


def save_model(model, tokenizer, out: Path, card: dict, save_dtype: str = "bfloat16", generation_config=None,
               overwrite: bool = False) -> Path:
    """Write a complete HF directory atomically: weights, config, tokenizer, generation config, card.

    ``out`` must be new, empty or a previous output of the same stage unless ``overwrite`` (downsize.io.check_output).
    """
    from transformers import GenerationConfig

    model = merge_lora(unwrap(model))
    if generation_config is None:
        eos = [tokenizer.eos_token_id]
        im_end = tokenizer.convert_tokens_to_ids("<|im_end|>") if "<|im_end|>" in tokenizer.get_vocab() else None
        if im_end is not None and im_end not in eos:
            eos.append(im_end)
        generation_config = GenerationConfig(eos_token_id=eos, pad_token_id=tokenizer.pad_token_id,
                                             do_sample=True, temperature=0.8, top_p=0.95)
    with atomic_dir(out, card.get("stage", KIND_DISTILL), overwrite) as tmp:
        model.to(SAVE_DTYPES[save_dtype]).save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        generation_config.save_pretrained(tmp)
        write_json_atomic(tmp / CARD_JSON, card)
        write_text_atomic(tmp / "README.md", render_card(card))
    return out


def render_card(card: dict) -> str:
    rows = "\n".join(f"| {k} | {v} |" for k, v in _flat(card))
    return f"# {card.get('name', 'student')}\n\nProduced by `downsize {card['stage']}`.\n\n| | |\n|---|---|\n{rows}\n"


def _flat(d: dict, prefix: str = ""):
    for k, v in d.items():
        if isinstance(v, dict) and k != "config":
            yield from _flat(v, f"{prefix}{k}.")
        elif k != "config":
            yield f"{prefix}{k}", (f"{v:.4g}" if isinstance(v, float) else v)


def _params(model) -> int:
    return sum(p.numel() for p in unwrap(model).parameters())
