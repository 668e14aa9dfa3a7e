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
from downsize.zoo.tokenizer import TokenizerSpec, train_bpe_tokenizer
from tiny_models import TINY_FAMILIES, make_tiny_model, save_tiny

torch.set_num_threads(int(os.environ.get("DOWNSIZE_TEST_THREADS", "2")))


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


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_tokenizer):
    return save_tiny(make_tiny_model("llama", tiny_tokenizer), tiny_tokenizer, tmp_path_factory.mktemp("tiny_llama"))


@pytest.fixture(scope="session", params=sorted(TINY_FAMILIES))
def tiny_family_dir(request, tmp_path_factory, tiny_tokenizer):
    family = request.param
    return save_tiny(make_tiny_model(family, tiny_tokenizer), tiny_tokenizer, tmp_path_factory.mktemp(f"tiny_{family}"))
