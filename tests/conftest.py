"""Shared fixtures: a tiny tokenizer trained on stdlib text and tiny random-init models per family.

    def test_x(tiny_model_dir):             # a saved Llama directory with tokenizer, ~100k params
        model, tok = load_model(tiny_model_dir)
    def test_y(tiny_family_dir):            # parametrised over llama, qwen2 (see TINY_FAMILIES)
"""

from __future__ import annotations

import os

import pytest
import torch

from downsize.data.stdlib import StdlibCorpus
from downsize.models.arch import build_config
from downsize.zoo.tokenizer import TokenizerSpec, train_bpe_tokenizer

torch.set_num_threads(int(os.environ.get("DOWNSIZE_TEST_THREADS", "2")))

# Small enough to build in milliseconds, real enough for every code path (GQA, several layers).
TINY_SHAPES = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                   num_key_value_heads=2, max_position_embeddings=256)
TINY_FAMILIES = {
    "llama": dict(tie_word_embeddings=False),
    "qwen2": dict(tie_word_embeddings=True),
}


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: pass --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def stdlib_texts() -> list[str]:
    corpus = StdlibCorpus.local()
    return [t for _, t in corpus.documents("validation")][:40]


@pytest.fixture(scope="session")
def tiny_tokenizer(tmp_path_factory, stdlib_texts):
    tok = train_bpe_tokenizer(stdlib_texts, TokenizerSpec(vocab_size=512, pretokenizer="llama-bpe"))
    path = tmp_path_factory.mktemp("tiny_tok")
    tok.save_pretrained(path)
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


def make_tiny_model(family: str, tokenizer, seed: int = 0, **overrides):
    from transformers import AutoModelForCausalLM

    fields = {**TINY_SHAPES, **TINY_FAMILIES.get(family, {}), **overrides}
    cfg = build_config(family, vocab_size=len(tokenizer), tokenizer=tokenizer, **fields)
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)


def save_tiny(model, tokenizer, path):
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_tokenizer):
    return save_tiny(make_tiny_model("llama", tiny_tokenizer), tiny_tokenizer, tmp_path_factory.mktemp("tiny_llama"))


@pytest.fixture(scope="session", params=sorted(TINY_FAMILIES))
def tiny_family_dir(request, tmp_path_factory, tiny_tokenizer):
    family = request.param
    return save_tiny(make_tiny_model(family, tiny_tokenizer), tiny_tokenizer, tmp_path_factory.mktemp(f"tiny_{family}"))
