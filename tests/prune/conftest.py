"""Fixtures for pruning tests: tiny models of each family and a small calibration batch of real stdlib text."""

from __future__ import annotations

import copy

import pytest
import torch

from downsize.data.packing import tokenize_documents

from tiny_models import TINY_FAMILIES, make_tiny_model


@pytest.fixture(scope="session")
def calib_ids(tiny_tokenizer, stdlib_texts) -> torch.Tensor:
    stream = tokenize_documents(tiny_tokenizer, stdlib_texts[:20])
    n, t = 8, 64
    return torch.from_numpy(stream[: n * t].astype("int64")).view(n, t)


@pytest.fixture(scope="session")
def tiny_models(tiny_tokenizer):
    return {fam: make_tiny_model(fam, tiny_tokenizer, seed=1) for fam in TINY_FAMILIES}


@pytest.fixture(params=sorted(TINY_FAMILIES))
def family_model(request, tiny_models):
    """(family, a fresh deep copy of the tiny model of that family)."""
    return request.param, copy.deepcopy(tiny_models[request.param])


def logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids, use_cache=False).logits
