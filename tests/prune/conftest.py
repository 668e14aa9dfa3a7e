"""Fixtures for pruning tests: tiny models of each family and a small calibration batch of real stdlib text."""

from __future__ import annotations

import copy
import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from downsize.data.packing import tokenize_documents

ROOT_CONFTEST = Path(__file__).resolve().parents[1] / "conftest.py"


def _root_conftest():
    """tests/conftest.py as a module (this file is also called conftest, so a plain import would find itself)."""
    for mod in list(sys.modules.values()):
        if getattr(mod, "__file__", None) and Path(mod.__file__).resolve() == ROOT_CONFTEST:
            return mod
    spec = importlib.util.spec_from_file_location("downsize_tests_root_conftest", ROOT_CONFTEST)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


_root = _root_conftest()
TINY_FAMILIES, make_tiny_model, save_tiny = _root.TINY_FAMILIES, _root.make_tiny_model, _root.save_tiny


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
