import numpy as np
import pytest

from downsize.data.packing import tokenize_documents

from tiny_models import make_tiny_model


@pytest.fixture(scope="session")
def make_model():
    return make_tiny_model


@pytest.fixture(scope="session")
def tiny_stream_file(tmp_path_factory, tiny_tokenizer, stdlib_texts):
    """The tiny tokenizer's stream of a few stdlib documents, saved for subprocess runners."""
    d = tmp_path_factory.mktemp("stream")
    np.save(d / "stream.npy", tokenize_documents(tiny_tokenizer, stdlib_texts[:6]).astype(np.int64))
    tiny_tokenizer.save_pretrained(d / "tok")
    return d
