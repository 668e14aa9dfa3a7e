"""LoRA adapters (PEFT) → GGUF LoRA adapters for llama.cpp / Ollama (Modelfile ADAPTER).

    >>> import gguf
    >>> from downsize.models.refs import load_model
    >>> from downsize.train.loop import LoraSpec, apply_lora
    >>> model, tok = load_model("zoo:coder-teacher-qwen")
    >>> apply_lora(model, LoraSpec(r=4)).save_pretrained("adapter")          # a PEFT adapter directory
    >>> r = export_lora_gguf("adapter", base="zoo:coder-teacher-qwen", out="adapter.gguf")
    >>> sorted(r)
    ['alpha', 'arch', 'bytes', 'out', 'pairs', 'r']
    >>> sorted(t.name for t in gguf.GGUFReader("adapter.gguf").tensors)[:2]
    ['blk.0.attn_k.weight.lora_a', 'blk.0.attn_k.weight.lora_b']

Tensor names follow the base model's GGUF names with ``.lora_a``/``.lora_b`` suffixes; the family adapter's
per-tensor transform (Llama's q/k row permutation) is applied to B, whose rows are the output features.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import gguf
import numpy as np
import torch

from downsize.errors import DownsizeError
from downsize.io import KIND_GGUF, atomic_path, check_output

_PEFT_NAME = re.compile(r"^(?:base_model\.model\.)?(?P<mod>.+)\.lora_(?P<ab>[AB])(?:\.default)?\.weight$")


def export_lora_gguf(adapter_dir: str | os.PathLike, base, out: str | os.PathLike, overwrite: bool = False) -> dict:
    """Write the PEFT adapter in ``adapter_dir`` (for base model ``base``) as a GGUF LoRA adapter at ``out``."""
    from safetensors.torch import load_file

    from downsize.export.gguf import family_for
    from downsize.export.gguf.convert import load_config
    from downsize.models.refs import resolve_model

    check_output(out, KIND_GGUF, overwrite)
    adapter_dir = Path(adapter_dir)
    cfg_path, w_path = adapter_dir / "adapter_config.json", adapter_dir / "adapter_model.safetensors"
    if not cfg_path.exists() or not w_path.exists():
        raise DownsizeError(f"{adapter_dir} is not a PEFT adapter (needs adapter_config.json and adapter_model.safetensors)",
                            hint="save the adapter with model.save_pretrained(dir) from PEFT")
    from downsize.models.checks import check_safetensors

    try:
        acfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DownsizeError(f"{cfg_path} is not valid JSON ({e})", hint="save the adapter again with PEFT") from None
    if not isinstance(acfg, dict):
        raise DownsizeError(f"{cfg_path} is not a JSON object", hint="save the adapter again with PEFT")
    check_safetensors(w_path)
    if acfg.get("peft_type", "LORA") != "LORA":
        raise DownsizeError(f"adapter type {acfg.get('peft_type')} is not LoRA", hint="only LoRA adapters export to GGUF")
    if acfg.get("use_dora") or acfg.get("use_rslora"):
        raise DownsizeError("DoRA / rsLoRA adapters have no llama.cpp equivalent", hint="merge the adapter into the model and export that")
    ref = resolve_model(base)
    if ref.is_gguf:
        raise DownsizeError("the base must be the Hugging Face model the adapter was trained on", hint="pass its folder or zoo:NAME")
    family = family_for(load_config(ref.path))
    tensors = load_file(w_path)
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    for name, t in tensors.items():
        m = _PEFT_NAME.match(name)
        if not m:
            raise DownsizeError(f"adapter tensor {name!r} is not a LoRA A/B matrix",
                                hint="adapters with modules_to_save or embedding LoRA must be merged and exported whole")
        pairs.setdefault(m["mod"] + ".weight", {})[m["ab"]] = t
    w = gguf.GGUFWriter(None, family.arch_name)
    w.add_type(gguf.GGUFType.ADAPTER)
    w.add_string(gguf.Keys.Adapter.TYPE, "lora")
    r = int(acfg.get("r", 8))
    alpha = float(acfg.get("lora_alpha", r))
    w.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
    n = 0
    for hf_name, ab in sorted(pairs.items()):
        if set(ab) != {"A", "B"}:
            raise DownsizeError(f"{hf_name} has only lora_{''.join(ab)}", hint="the adapter file is incomplete")
        gname = family.tensor_name(hf_name)
        if gname is None:
            raise DownsizeError(f"LoRA on {hf_name} has no counterpart in the GGUF model", hint="merge the adapter and export the model")
        a = ab["A"].to(torch.float32).numpy()  # (r, in)
        b = ab["B"].to(torch.float32).numpy()  # (out, r); rows permuted like the base weight
        b = family.transform(hf_name, b, b.shape)
        w.add_tensor(gname + ".lora_a", np.ascontiguousarray(a))
        w.add_tensor(gname + ".lora_b", np.ascontiguousarray(b))
        n += 1
    if n == 0:
        raise DownsizeError(f"{adapter_dir} holds no LoRA weights", hint="check the adapter was saved after training")
    out = Path(out)
    with atomic_path(out, KIND_GGUF, overwrite) as tmp:
        w.write_header_to_file(tmp)
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
    return {"out": str(out), "arch": family.arch_name, "pairs": n, "r": r, "alpha": alpha, "bytes": out.stat().st_size}
