"""Fixtures for export tests: tiny random-init models of every family the GGUF exporter supports.

    def test_x(export_family_dir):     # parametrised over EXPORT_FAMILIES; a saved HF folder with tokenizer
"""

from __future__ import annotations

import pytest

from downsize.models.arch import arch_configs
from tiny_models import make_tiny_model, save_tiny


# Every family the GGUF exporter supports, with the tiny-model overrides its module declares (head_dim explicit where
# the family's default is not hidden/heads; rows of 64 so Q8_0 applies). A new family file is picked up here.
EXPORT_FAMILIES: dict[str, dict] = {key: spec.tiny for key, spec in arch_configs().items()}


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
