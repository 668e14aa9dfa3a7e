"""config.json read without transformers (export/gguf/config.py) gives every family the same hyper-parameters,
extra tensors and tying as transformers' AutoConfig, for configs as transformers 5 saves them and in the legacy
forms found on the Hub (rope_theta / rope_scaling with "type", no head_dim, no layer_types, Phi-3 "su", ...)."""

from __future__ import annotations

import json

import gguf
import pytest
from transformers import AutoConfig

from downsize.errors import DownsizeError
from downsize.export.gguf import family_for
from downsize.export.gguf.convert import load_config
from downsize.models.arch import build_config

from tiny_models import TINY_SHAPES

from .conftest import EXPORT_FAMILIES

LF = [1.0, 1.5, 2.0, 3.0]


def _drop(*keys):
    def edit(c):
        for k in keys:
            c.pop(k, None)
    return edit


def _set(drop=(), **fields):
    def edit(c):
        _drop(*drop)(c)
        c.update(fields)
    return edit


VARIANTS = {  # name -> (family, edit of the config.json transformers saves)
    "llama": ("llama", None), "mistral": ("mistral", None), "qwen2": ("qwen2", None), "qwen3": ("qwen3", None),
    "gemma2": ("gemma2", None), "gemma3": ("gemma3", None), "phi3": ("phi3", None),
    "llama-legacy-llama3-rope": ("llama", _set(drop=("rope_parameters", "head_dim", "tie_word_embeddings", "num_key_value_heads"),
                                               rope_theta=500000.0, rope_scaling={"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                                                                  "original_max_position_embeddings": 64, "rope_type": "llama3"})),
    "llama-llama3-no-orig-ctx": ("llama", _set(drop=("rope_parameters",), rope_theta=500000.0,
                                               rope_scaling={"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "rope_type": "llama3"})),
    "llama-linear-type-key": ("llama", _set(drop=("rope_parameters",), rope_scaling={"type": "linear", "factor": 2.0})),
    "mistral-legacy": ("mistral", _set(drop=("rope_parameters", "sliding_window", "head_dim"), rope_theta=1000000.0)),
    "qwen2-yarn": ("qwen2", _set(drop=("rope_parameters", "tie_word_embeddings"), rope_theta=1000000.0,
                                 rope_scaling={"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32})),
    "qwen2-yarn-no-orig-ctx": ("qwen2", _set(drop=("rope_parameters",), rope_scaling={"rope_type": "yarn", "factor": 4.0})),
    "qwen3-no-head-dim": ("qwen3", _drop("rope_parameters", "head_dim", "layer_types")),
    "gemma2-legacy": ("gemma2", _set(drop=("rope_parameters", "layer_types", "final_logit_softcapping", "attn_logit_softcapping",
                                           "tie_word_embeddings"), rope_theta=10000.0)),
    "gemma3-legacy": ("gemma3", _set(drop=("rope_parameters", "layer_types", "tie_word_embeddings"), rope_theta=1000000.0,
                                     rope_local_base_freq=20000.0, sliding_window_pattern=2,
                                     rope_scaling={"rope_type": "linear", "factor": 8.0})),
    "gemma3-nested-rope": ("gemma3", _set(rope_parameters={"full_attention": {"rope_type": "linear", "factor": 4.0, "rope_theta": 5e5},
                                                           "sliding_attention": {"rope_type": "default", "rope_theta": 12345.0}})),
    "phi3-longrope": ("phi3", _set(drop=("rope_parameters",), partial_rotary_factor=0.5, max_position_embeddings=128,
                                   original_max_position_embeddings=32,
                                   rope_scaling={"type": "longrope", "long_factor": LF, "short_factor": [1.0] * 4})),
    "phi3-su": ("phi3", _set(drop=("rope_parameters", "original_max_position_embeddings"), partial_rotary_factor=0.5,
                             max_position_embeddings=128,
                             rope_scaling={"type": "su", "long_factor": LF, "short_factor": [1.0] * 4,
                                           "original_max_position_embeddings": 32})),
    "phi3-sliding": ("phi3", _set(sliding_window=64)),
}


def _write_config(family: str, edit, path):
    fields = {**TINY_SHAPES, **EXPORT_FAMILIES[family]}
    cfg = build_config(family, vocab_size=512, eos_token_id=0, bos_token_id=0, **fields)
    cfg.save_pretrained(path)
    if edit is not None:
        c = json.loads((path / "config.json").read_text())
        edit(c)
        (path / "config.json").write_text(json.dumps(c))
    return path


def _hparams(family) -> dict:
    w = gguf.GGUFWriter(None, family.arch_name)
    family.write_hparams(w)
    return {k: (v.value, v.type) for k, v in w.kv_data[0].items()}


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_config_reads_like_transformers(name, tmp_path):
    family_name, edit = VARIANTS[name]
    d = _write_config(family_name, edit, tmp_path)
    ours, ref = family_for(load_config(d)), family_for(AutoConfig.from_pretrained(d, trust_remote_code=False))
    assert type(ours) is type(ref)
    assert _hparams(ours) == _hparams(ref)
    assert (ours.n_layers, ours.n_head, ours.n_kv, ours.head_dim, ours.tied) == \
        (ref.n_layers, ref.n_head, ref.n_kv, ref.head_dim, ref.tied)
    extra_ours, extra_ref = dict(ours.extra_tensors()), dict(ref.extra_tensors())
    assert extra_ours.keys() == extra_ref.keys()
    for k in extra_ours:
        assert extra_ours[k].tobytes() == extra_ref[k].tobytes(), k
    assert load_config(d).eos_token_id == AutoConfig.from_pretrained(d).eos_token_id


def test_unknown_model_type_is_refused_like_remote_code(tmp_path):
    d = _write_config("llama", _set(model_type="my_custom_llama", auto_map={"AutoConfig": "x.MyConfig"}), tmp_path)
    with pytest.raises(DownsizeError, match="model_type 'my_custom_llama'") as e:
        load_config(d)
    assert "trust_remote_code" in e.value.hint
