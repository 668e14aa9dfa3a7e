import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from downsize.data.packing import tokenize_documents

ROOT_CONFTEST = Path(__file__).resolve().parents[1] / "conftest.py"


def root_conftest():
    """tests/conftest.py as a module (this file is also called conftest, so a plain import finds itself)."""
    for mod in list(sys.modules.values()):
        if getattr(mod, "__file__", None) and Path(mod.__file__).resolve() == ROOT_CONFTEST:
            return mod
    spec = importlib.util.spec_from_file_location("downsize_tests_root_conftest", ROOT_CONFTEST)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="session")
def make_model():
    return root_conftest().make_tiny_model


@pytest.fixture(scope="session")
def tiny_stream_file(tmp_path_factory, tiny_tokenizer, stdlib_texts):
    """The tiny tokenizer's stream of a few stdlib documents, saved for subprocess runners."""
    d = tmp_path_factory.mktemp("stream")
    np.save(d / "stream.npy", tokenize_documents(tiny_tokenizer, stdlib_texts[:6]).astype(np.int64))
    tiny_tokenizer.save_pretrained(d / "tok")
    return d
