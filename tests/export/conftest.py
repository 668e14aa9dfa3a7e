"""Fixtures for export tests: tiny random-init models of every family the GGUF exporter supports.

    def test_x(export_family_dir):     # parametrised over EXPORT_FAMILIES; a saved HF folder with tokenizer
"""

from __future__ import annotations

import pytest

from tiny_models import make_tiny_model, save_tiny


# family -> config overrides on top of tests/conftest.py TINY_SHAPES (head_dim explicit where the family's default
# is not hidden/heads; rows of 64 so Q8_0 and the K-quants (256-wide blocks need hidden 256) apply where noted).
EXPORT_FAMILIES: dict[str, dict] = {
    "llama": dict(tie_word_embeddings=False),
    "mistral": dict(tie_word_embeddings=False, head_dim=16),
    "qwen2": dict(tie_word_embeddings=True),
    "qwen3": dict(tie_word_embeddings=False, head_dim=16),
    "gemma2": dict(head_dim=16, query_pre_attn_scalar=16, layer_types=["sliding_attention", "full_attention"],
                   sliding_window=128),
    "gemma3": dict(head_dim=16, query_pre_attn_scalar=16, layer_types=["sliding_attention", "full_attention"],
                   sliding_window=128),
    "phi3": dict(tie_word_embeddings=False, pad_token_id=None),
}


@pytest.fixture(scope="session", params=sorted(EXPORT_FAMILIES))
def export_family_dir(request, tmp_path_factory, tiny_tokenizer):
    family = request.param
    model = make_tiny_model(family, tiny_tokenizer, **EXPORT_FAMILIES[family])
    return save_tiny(model, tiny_tokenizer, tmp_path_factory.mktemp(f"export_{family}"))


@pytest.fixture(scope="session")
def kquant_model_dir(tmp_path_factory, tiny_tokenizer):
    """A tiny Llama whose rows are 256 wide, so the K-quants (256-value super-blocks) really apply."""
    model = make_tiny_model("llama", tiny_tokenizer, hidden_size=256, intermediate_size=512, num_attention_heads=4,
                            num_key_value_heads=2, num_hidden_layers=2)
    return save_tiny(model, tiny_tokenizer, tmp_path_factory.mktemp("export_kquant"))
