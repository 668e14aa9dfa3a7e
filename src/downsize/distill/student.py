"""The student of a distillation: a model to start from, or the teacher's config with changes (random init);
LoRA/QLoRA bases and merging them back.

    >>> StudentSpec.parse("teacher:num_hidden_layers=2,hidden_size=64").overrides["num_hidden_layers"]
    2
    >>> StudentSpec.parse("runs/pruned").ref
    'runs/pruned'
    >>> from downsize.models.refs import load_model
    >>> teacher, tok = load_model("zoo:coder-teacher-qwen")
    >>> student, student_tok, what = build_student("teacher:num_hidden_layers=2,hidden_size=64", teacher, tok)
    >>> student.config.num_hidden_layers, student.config.hidden_size, student.config.vocab_size, what
    (2, 64, 4096, 'teacher config with num_hidden_layers=2, hidden_size=64 (random init)')
"""

from __future__ import annotations

import copy
import json
import logging
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

import torch

from downsize.distill.teacher import unwrap
from downsize.errors import DownsizeError
from downsize.train.loop import LoraSpec, merge_lora

log = logging.getLogger(__name__)

# Student config fields that stop being valid when the width changes and no value is given for them.
_WIDTH_DERIVED = ("head_dim",)


# ---- the student ----------------------------------------------------------------------------

@dataclass(frozen=True)
class StudentSpec:
    """The student: a model reference to start from, or the teacher's config with changes (random init).

    ``StudentSpec.derived(num_hidden_layers=4, hidden_size=192)`` — teacher config, those fields changed,
    ``intermediate_size`` scaled with the width unless given, random init from ``seed``.
    ``StudentSpec.from_ref("runs/pruned")`` — an existing model (e.g. a pruned teacher), its weights kept.
    """

    ref: str | None = None
    overrides: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 0

    def __post_init__(self):
        object.__setattr__(self, "overrides", MappingProxyType(dict(self.overrides)))
        if self.ref is not None and self.overrides:
            raise DownsizeError("a student is either a model reference or teacher-config overrides, not both",
                                hint="pass StudentSpec.from_ref(path) or StudentSpec.derived(field=value, ...)")

    @classmethod
    def derived(cls, seed: int = 0, **overrides) -> "StudentSpec":
        return cls(None, overrides, seed)

    @classmethod
    def from_ref(cls, ref: str) -> "StudentSpec":
        return cls(str(ref), {}, 0)

    @classmethod
    def parse(cls, text: str) -> "StudentSpec":
        """CLI form: a model reference, or ``teacher:num_hidden_layers=4,hidden_size=192``."""
        if not text.startswith("teacher:"):
            return cls.from_ref(text)
        fields: dict[str, Any] = {}
        for part in text[len("teacher:"):].replace(",", " ").split():
            k, sep, v = part.partition("=")
            if not sep:
                raise DownsizeError(f"cannot read student field {part!r}", hint="write teacher:num_hidden_layers=4,hidden_size=192")
            fields[k] = json.loads(v) if v[:1].isdigit() or v in ("true", "false") or v[:1] in "-[{" else v
        return cls.derived(**fields)

    def describe(self) -> str:
        return self.ref or "teacher config with " + ", ".join(f"{k}={v}" for k, v in self.overrides.items()) + " (random init)"


def derive_config(teacher_config, overrides: Mapping[str, Any]):
    """The teacher's config with ``overrides``; width- and depth-derived fields (``head_dim``, ``layer_types``) are
    recomputed, unknown fields refused."""
    cfg = copy.deepcopy(teacher_config)
    unknown = [k for k in overrides if not hasattr(cfg, k)]
    if unknown:
        raise DownsizeError(f"the teacher config ({cfg.model_type}) has no field(s) {unknown}",
                            hint="use config.json names, e.g. num_hidden_layers, hidden_size, intermediate_size, "
                                 "num_attention_heads, num_key_value_heads")
    ov = dict(overrides)
    if "hidden_size" in ov:
        ratio = ov["hidden_size"] / teacher_config.hidden_size
        ov.setdefault("intermediate_size", max(32, int(round(teacher_config.intermediate_size * ratio / 32)) * 32))
        if "num_attention_heads" not in ov and ov["hidden_size"] % teacher_config.num_attention_heads:
            raise DownsizeError(f"hidden_size {ov['hidden_size']} is not divisible by the teacher's "
                                f"{teacher_config.num_attention_heads} attention heads",
                                hint="also set num_attention_heads (and num_key_value_heads) to a divisor")
    if "hidden_size" in ov or "num_attention_heads" in ov:
        for k in _WIDTH_DERIVED:
            if k not in ov and hasattr(cfg, k):
                heads = ov.get("num_attention_heads", teacher_config.num_attention_heads)
                ov[k] = ov.get("hidden_size", teacher_config.hidden_size) // heads
    layer_types = getattr(teacher_config, "layer_types", None)
    if "num_hidden_layers" in ov and "layer_types" not in ov and isinstance(layer_types, list) and layer_types:
        # one entry per layer (full / sliding attention), else the config does not validate when saved
        ov["layer_types"] = [layer_types[i % len(layer_types)] for i in range(ov["num_hidden_layers"])]
    for k, v in ov.items():
        setattr(cfg, k, v)
    return cfg


def build_student(spec: StudentSpec | str | torch.nn.Module, teacher_model, teacher_tok, lora: LoraSpec | None = None):
    """Resolve a student spec to (model fp32, or NF4 for QLoRA, tokenizer, description)."""
    from transformers import AutoModelForCausalLM, PretrainedConfig

    if isinstance(spec, tuple):  # (model, tokenizer)
        return spec[0].float(), spec[1], f"given model ({type(spec[0]).__name__})"
    if isinstance(spec, torch.nn.Module):
        return spec.float(), teacher_tok, f"given model ({type(spec).__name__})"
    if isinstance(spec, PretrainedConfig):
        torch.manual_seed(0)
        return AutoModelForCausalLM.from_config(spec, dtype=torch.float32), teacher_tok, f"config {spec.model_type}"
    if isinstance(spec, str):
        spec = StudentSpec.parse(spec)
    if spec.ref is not None:
        model, tok = _load_base(spec.ref, lora)
        return model, tok, spec.ref
    if lora is not None and lora.quantize_base:
        raise DownsizeError("QLoRA needs a pretrained student to quantise, not a random-init one",
                            hint="give --student a model reference, or drop --qlora")
    if teacher_model is None:
        raise DownsizeError("a student derived from the teacher's config needs the teacher model",
                            hint="with an offline cache, give the student as a model reference")
    cfg = derive_config(teacher_model.config, spec.overrides)
    torch.manual_seed(spec.seed)
    return AutoModelForCausalLM.from_config(cfg, dtype=torch.float32), teacher_tok, spec.describe()


def load_nf4(ref: str):
    """Load a model reference with 4-bit NF4 weights for QLoRA (CUDA + bitsandbytes only)."""
    if not torch.cuda.is_available():
        raise DownsizeError("QLoRA (a 4-bit NF4 base, --qlora) needs a CUDA GPU with bitsandbytes; this machine has none",
                            hint="use LoRA on the full-precision base instead: drop --qlora and keep --lora-r")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise DownsizeError("QLoRA needs the bitsandbytes package", hint="pip install -c constraints.txt bitsandbytes") from None
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    from downsize.models.refs import load_tokenizer, resolve_model

    r = resolve_model(ref)
    q = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16,
                           bnb_4bit_use_double_quant=True)
    model = AutoModelForCausalLM.from_pretrained(str(r.path), quantization_config=q, device_map={"": 0})
    return model, load_tokenizer(r)


def merge_qlora(peft_model, base_ref: str):
    """Fold QLoRA adapters into a full-precision copy of the base (not into the 4-bit weights, which would
    round the update away): the adapters are re-attached to the fp32 base and merged there."""
    from peft import get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict

    from downsize.models.refs import load_model

    adapters = {k: v.detach().float().cpu() for k, v in get_peft_model_state_dict(peft_model).items()}
    base, _ = load_model(base_ref, dtype=torch.float32)
    fresh = get_peft_model(base, peft_model.peft_config["default"])
    set_peft_model_state_dict(fresh, adapters)
    return fresh.merge_and_unload()


def _load_base(ref: str, lora: LoraSpec | None):
    from downsize.models.refs import load_model

    if lora is not None and lora.quantize_base == "nf4":
        return load_nf4(ref)
    return load_model(ref, dtype=torch.float32)


def _merge(model, lora: LoraSpec | None, base_ref):
    model = unwrap(model)
    if lora is not None and lora.quantize_base == "nf4":
        return merge_qlora(model, base_ref)
    return merge_lora(model)
