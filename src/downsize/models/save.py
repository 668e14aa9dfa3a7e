"""Save a model as a normal Hugging Face directory, atomically, with a model card.

    >>> save_model_dir(model, tok, "out/student", card={"stage": "distill", "steps": 200})
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from downsize.io import atomic_dir, write_json_atomic, write_text_atomic

CARD_JSON = "downsize_card.json"


def save_model_dir(model, tokenizer, out: str | Path, card: dict | None = None, dtype: torch.dtype | None = None,
                   generation_config=None) -> Path:
    """Write safetensors, config, tokenizer, generation config and card to ``out`` (replaced whole, atomically)."""
    out = Path(out)
    with atomic_dir(out) as tmp:
        m = model.to(dtype) if dtype is not None else model
        m.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        gen = generation_config or getattr(model, "generation_config", None)
        if gen is not None:
            gen.save_pretrained(tmp)
        if card:
            write_json_atomic(tmp / CARD_JSON, card)
            rows = "\n".join(f"| {k} | {json.dumps(v) if isinstance(v, (dict, list)) else v} |" for k, v in card.items())
            write_text_atomic(tmp / "README.md", f"# {card.get('name', out.name)}\n\nWritten by downsize.\n\n| | |\n|---|---|\n{rows}\n")
    return out
