"""The local backend: concurrent chat() calls become batches; batched greedy equals one-by-one greedy."""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import pytest

from downsize.generate import GenerateConfig, GenParams, generate
from downsize.generate.backends import LocalBackend
from downsize.generate.writer import read_jsonl

PROMPTS = ["What is 2 plus 2?", "def main(argv):", "import os", "Which classes subclass Shape in this repository?"]


@pytest.fixture(scope="module")
def tiny_chat_dir(tiny_model_dir):
    return tiny_model_dir


def _convs():
    return [[{"role": "user", "content": p}] for p in PROMPTS]


def test_batched_equals_single_and_logprobs_are_consistent(tiny_chat_dir):
    params = GenParams(max_tokens=12, top_logprobs=4, batch_size=8)
    single = LocalBackend(str(tiny_chat_dir), GenParams(max_tokens=12, top_logprobs=4, batch_size=1))
    one = [single.chat(c) for c in _convs()]
    single.close()
    batched = LocalBackend(str(tiny_chat_dir), params)
    with ThreadPoolExecutor(4) as pool:
        many = list(pool.map(batched.chat, _convs()))
    batched.close()
    assert batched.stats["requests"] == 4 and batched.stats["batches"] < 4  # calls were merged
    for a, b in zip(one, many):
        assert [t["id"] for t in a.logprobs] == [t["id"] for t in b.logprobs]
        for ta, tb in zip(a.logprobs, b.logprobs):
            assert math.isclose(ta["logprob"], tb["logprob"], abs_tol=1e-3)
            # greedy: the chosen token is the most likely one, and top-k is sorted
            assert ta["top"][0][0] == ta["id"] and math.isclose(ta["top"][0][1], ta["logprob"], abs_tol=1e-6)
            assert [v for _, v in ta["top"]] == sorted((v for _, v in ta["top"]), reverse=True)
        assert a.message == b.message and a.usage["completion_tokens"] == len(a.logprobs)


def test_generate_with_local_teacher(tiny_chat_dir, tmp_path, codebase):
    cfg = GenerateConfig(teacher=str(tiny_chat_dir), out=str(tmp_path / "t.jsonl"), codebase=str(codebase),
                         n_codebase=4, n_negative=2, in_flight=3, params=GenParams(max_tokens=8, batch_size=3, top_logprobs=2))
    s = generate(cfg)
    assert s["written"] + s["rejected"] == 6 and s["backend"]["requests"] >= 6
    recs = read_jsonl(cfg.out) + read_jsonl(str(tmp_path / "t.rejected.jsonl"))
    # a random tiny model does not use tools; every trace is rejected, and for a reason
    assert all(r.get("rejections") for r in recs)
    assert all(len(r["logprobs"]) == r["stats"]["turns"] for r in recs)
