import importlib.util
import json
import sys
from pathlib import Path

import pytest

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
