import json

import pytest

from tiny_models import make_tiny_model


@pytest.fixture(scope="session")
def make_model():
    return make_tiny_model


@pytest.fixture(scope="session")
def text_data(tmp_path_factory, stdlib_texts):
    """A directory of eight real stdlib modules (about 20k tiny-tokenizer tokens)."""
    d = tmp_path_factory.mktemp("textdata")
    for i, t in enumerate(stdlib_texts[:8]):
        (d / f"doc{i}.py").write_text(t)
    return d


@pytest.fixture(scope="session")
def chat_jsonl(tmp_path_factory):
    p = tmp_path_factory.mktemp("chat") / "chats.jsonl"
    recs = [
        {"messages": [{"role": "system", "content": "You write Python."},
                      {"role": "user", "content": f"Add {i} and {i + 1}."},
                      {"role": "assistant", "content": f"def f():\n    return {i} + {i + 1}"}]}
        for i in range(6)
    ] + [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
                       {"role": "user", "content": "bye"}, {"role": "assistant", "content": "goodbye"}]}]
    p.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return p
