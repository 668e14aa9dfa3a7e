"""config.json as the GGUF converter reads it: plain JSON plus the defaults and normalisations transformers would
apply for the model type, without importing transformers (or torch).

The families read a handful of attributes (sizes, head_dim, rope parameters, sliding windows, soft-capping,
tie_word_embeddings, eos_token_id). For each supported ``model_type`` the family module registers the defaults of
transformers' config class for exactly those attributes, and ``load_config`` reproduces transformers 5's
post-init rules that change them: ``num_key_value_heads``/``head_dim`` derived from the other sizes, Gemma's
``layer_types`` from the sliding-window pattern, and the RoPE standardisation that turns legacy ``rope_theta`` /
``rope_scaling`` (``type`` → ``rope_type``, Phi-3's ``su``/``yarn`` → ``longrope``, Gemma 3's per-layer-type dict)
into ``rope_parameters``. tests/export/test_config.py checks every family against ``AutoConfig``.

    >>> from downsize.models.refs import resolve_model
    >>> cfg = load_config(resolve_model("zoo:coder-teacher-qwen").path)
    >>> cfg.model_type, cfg.num_key_value_heads, cfg.rope_parameters       # defaults and RoPE resolved as transformers does
    ('qwen2', 2, {'rope_theta': 10000.0, 'rope_type': 'default'})
    >>> getattr(cfg, "head_dim", None)

Only built-in model types are read (there is no remote code to run): an unknown ``model_type`` is refused, as
transformers refuses it with ``trust_remote_code`` off.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from downsize.errors import DownsizeError

CONFIG_FILE = "config.json"
# transformers' RotaryEmbeddingConfigMixin.default_theta (every supported family except Gemma 3, which sets its own)
DEFAULT_ROPE_THETA = 10_000.0
_SCALED_ROPE = ("llama3", "yarn", "longrope")  # rope types that carry original_max_position_embeddings
_LEGACY_LAYER_TYPES = {"attention": "full_attention"}


@dataclass(frozen=True)
class ModelType:
    """How transformers builds the config of one ``model_type``: class defaults, then post-init rules."""

    name: str
    defaults: dict[str, Any]
    # (raw config.json dict with defaults applied, consumed keys) -> None; the type's own __post_init__ rules
    post_init: Callable[[dict], None] | None = None
    # the type's RoPE standardisation (transformers' convert_rope_params_to_dict); the generic one by default
    rope: Callable[[dict], None] | None = None
    class_fields: frozenset[str] = field(default_factory=frozenset)  # attributes the config class itself defines


MODEL_TYPES: dict[str, ModelType] = {}


def register_model_type(name: str, defaults: dict[str, Any], *, post_init=None, rope=None) -> ModelType:
    """Register the transformers defaults of one ``model_type`` (called by the family modules)."""
    if name in MODEL_TYPES:
        raise ValueError(f"model_type {name!r} is registered twice")
    mt = ModelType(name, dict(defaults), post_init, rope, frozenset(defaults))
    MODEL_TYPES[name] = mt
    return mt


class HFConfig:
    """A read-only attribute view of a resolved config.json (``getattr(cfg, "x", None)`` works as on a transformers
    config)."""

    __slots__ = ("_fields",)

    def __init__(self, fields: dict[str, Any]):
        object.__setattr__(self, "_fields", dict(fields))

    def __getattr__(self, name: str) -> Any:
        try:
            return self._fields[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("HFConfig is read-only")

    def to_dict(self) -> dict[str, Any]:
        return copy.deepcopy(self._fields)

    def __repr__(self) -> str:
        return f"HFConfig(model_type={self._fields.get('model_type')!r}, architectures={self._fields.get('architectures')!r})"


# ---- post-init rules shared by several families (transformers' __post_init__) ---------------------------------
def kv_heads_default(c: dict) -> None:
    if c.get("num_key_value_heads") is None:
        c["num_key_value_heads"] = c["num_attention_heads"]


def head_dim_from_sizes(c: dict) -> None:
    if c.get("head_dim") is None:
        c["head_dim"] = c["hidden_size"] // c["num_attention_heads"]


def _nested_keys(c: dict, rp: dict) -> list[str]:
    labels = c.get("layer_types") or ()
    return [k for k in rp if k in labels]


def standardize_rope(c: dict, rp: dict, theta_attr: float | None = None, prf_attr: float | None = None) -> dict:
    """transformers' standardize_rope_params: rope_type from the legacy ``type``, the pre-training length for the
    scaled types. ``theta_attr``/``prf_attr`` are the config-class attributes (None: the class has none)."""
    nested = _nested_keys(c, rp)
    if not (rp or theta_attr):
        return rp
    if not nested:
        rp.setdefault("rope_type", rp.get("type", "default"))
        rp.setdefault("rope_theta", theta_attr)
        if prf_attr is not None:
            rp.setdefault("partial_rotary_factor", prf_attr)
        if rp["rope_type"] in _SCALED_ROPE:
            if "original_max_position_embeddings" in c.get("_class_fields", ()):
                rp["original_max_position_embeddings"] = c["original_max_position_embeddings"]
            else:
                rp.setdefault("original_max_position_embeddings", c.get("max_position_embeddings"))
    else:
        for lt in nested:
            if rp[lt] is None:
                continue
            rp[lt].setdefault("rope_type", rp[lt].get("type", "default"))
            rp[lt].setdefault("rope_theta", theta_attr)
            if prf_attr is not None:
                rp[lt].setdefault("partial_rotary_factor", prf_attr)
            if rp[lt]["rope_type"] in _SCALED_ROPE:
                rp[lt].setdefault("original_max_position_embeddings", c.get("max_position_embeddings"))
    return rp


def generic_rope(c: dict) -> None:
    """transformers' RotaryEmbeddingConfigMixin.convert_rope_params_to_dict: legacy keys move into rope_parameters."""
    rope_scaling = c.pop("rope_scaling", None)
    rp = copy.deepcopy(rope_scaling or c.get("rope_parameters")) or {}
    theta = c.pop("rope_theta", DEFAULT_ROPE_THETA)
    prf = c.pop("partial_rotary_factor", None)
    for d in [rp[k] for k in _nested_keys(c, rp)] or [rp]:
        if d is None:
            continue
        d.setdefault("rope_theta", theta)
        if prf is not None:
            d.setdefault("partial_rotary_factor", prf)
    c["rope_parameters"] = standardize_rope(c, rp)


def load_config(root: Path, check_architecture: Callable[[list], None] | None = None) -> HFConfig:
    """Read ``root/config.json`` with the defaults of its model type (see the module docstring).

    ``check_architecture(architectures)`` runs before the model type is looked up, so an unsupported architecture
    is reported as such rather than as an unknown model type.
    """
    root = Path(root)
    path = root / CONFIG_FILE
    if not path.exists():
        raise DownsizeError(f"{root} has no config.json", hint="point at a Hugging Face model folder")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as e:
        raise DownsizeError(f"cannot read {path}: {e}", hint="re-save the model with save_pretrained") from None
    if not isinstance(raw, dict):
        raise DownsizeError(f"cannot read {path}: it holds a JSON {type(raw).__name__}, not an object",
                            hint="re-save the model with save_pretrained")
    if check_architecture is not None:
        check_architecture(raw.get("architectures") or [])
    from downsize.families import load_families

    load_families()
    mt = MODEL_TYPES.get(raw.get("model_type"))
    if mt is None:
        raise DownsizeError(f"cannot read {path}: model_type {raw.get('model_type')!r} is not one of the built-in "
                            f"types the exporter knows ({', '.join(sorted(MODEL_TYPES))})",
                            hint="the exporter supports transformers' built-in architectures only (trust_remote_code is off)")
    c = {**copy.deepcopy(mt.defaults), **raw, "_class_fields": mt.class_fields}
    try:
        if mt.post_init is not None:
            mt.post_init(c)
        if c.get("layer_types") is not None:
            c["layer_types"] = [_LEGACY_LAYER_TYPES.get(t, t) for t in c["layer_types"]]
        (mt.rope or generic_rope)(c)
    except (KeyError, TypeError, ValueError, AttributeError, ZeroDivisionError) as e:
        raise DownsizeError(f"cannot read {path}: {type(e).__name__}: {e}",
                            hint="the config does not have the fields its model type needs; re-save it with save_pretrained") from None
    c.pop("_class_fields")
    return HFConfig(c)
