"""Generation against a real llama.cpp server serving a GGUF exported by downsize: resume after a
SIGKILLed server, bad prompt-file lines, stored top-k logprobs, N in flight."""

from __future__ import annotations

import json
import threading
import time

import pytest

from downsize.generate import AgentConfig, GenerateConfig, GenParams, generate
from downsize.generate.run import rejected_path
from downsize.generate.writer import read_jsonl

from .llamacpp import LlamaServer

pytest.importorskip("llama_cpp")
FAST = GenParams(max_tokens=12, max_retries=2, backoff_base_s=0.05, backoff_max_s=0.2, timeout_s=30)


@pytest.fixture(scope="module")
def tiny_gguf(tiny_model_dir, tmp_path_factory):
    from downsize.export.gguf import export_gguf

    out = tmp_path_factory.mktemp("gguf") / "tiny-f32.gguf"
    export_gguf(str(tiny_model_dir), out, quant="F32")
    return out


@pytest.fixture(scope="module")
def llama_server(tiny_gguf, tmp_path_factory):
    srv = LlamaServer(tiny_gguf, log=tmp_path_factory.mktemp("srv") / "server.log").start()
    yield srv
    srv.stop()


def _records(cfg):
    return read_jsonl(cfg.out) + read_jsonl(rejected_path(cfg.out))


def test_plain_generation_with_logprobs_and_bad_lines(llama_server, tmp_path):
    prompts = tmp_path / "p.jsonl"
    lines = [json.dumps({"prompt": f"def f{i}(x):"}) for i in range(5)]
    lines.insert(2, '{"prompt": 12}')
    lines.insert(4, "not json at all")
    prompts.write_text("\n".join(lines) + "\n")
    cfg = GenerateConfig(teacher=llama_server.ref, out=str(tmp_path / "o.jsonl"), prompts=str(prompts), n_negative=0,
                         in_flight=2, params=GenParams(max_tokens=5, top_logprobs=3, max_retries=1))
    s = generate(cfg)
    assert s["bad_lines"] == ["p.jsonl line 3: needs a non-empty 'prompt' string or a 'messages' list",
                              "p.jsonl line 5: not valid JSON (Expecting value at column 1)"]
    recs = read_jsonl(cfg.out)
    assert len(recs) == 5 and s["written"] == 5
    for r in recs:
        assert [m["role"] for m in r["messages"]] == ["user", "assistant"]
        (lp,) = r["logprobs"]  # one assistant turn
        # llama-cpp-python keys top_logprobs by token text, so tokens decoding alike collapse: at most k
        assert 1 <= len(lp) <= 5 and all(1 <= len(t["top"]) <= 3 for t in lp) and any(len(t["top"]) == 3 for t in lp)
        for t in lp:  # greedy (temperature 0): the chosen token is the most likely one
            assert t["top"][0][1] >= t["top"][-1][1] and abs(t["logprob"] - t["top"][0][1]) < 1e-4
        assert r["stats"]["completion_tokens"] == len(lp)


def test_server_killed_mid_run_then_restarted(llama_server, tmp_path, codebase):
    cfg = GenerateConfig(teacher=llama_server.ref, out=str(tmp_path / "t.jsonl"), codebase=str(codebase),
                         n_codebase=40, n_negative=10, in_flight=4, params=FAST, agent=AgentConfig(max_turns=2))
    result = {}
    th = threading.Thread(target=lambda: result.update(generate(cfg)))
    th.start()
    out = tmp_path / "t.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # kill the server once some traces are on disk
        done = sum(1 for p in (out, rejected_path(out)) if p.exists() for _ in open(p))
        if done >= 5:
            break
        time.sleep(0.02)
    llama_server.kill()
    th.join(60)
    assert result["stopped"] and result["remaining"] > 0
    first = _records(cfg)
    assert 5 <= len(first) < result["tasks"]
    llama_server.start()
    s = generate(cfg)
    assert s["stopped"] is None and s["skipped_done"] == len(first)
    ids = [r["id"] for r in _records(cfg)]
    assert s["tasks"] == result["tasks"] >= 30
    assert len(ids) == len(set(ids)) == s["tasks"]  # nothing lost, nothing doubled
    assert all(r["messages"][0]["role"] == "system" and r["tools"] for r in _records(cfg))


def test_stored_logprobs_feed_logit_kd(tmp_path):
    """One teacher pass serves text KD and logit KD: a llama.cpp server's top-k logprobs, stored with the data,
    become the SFT loss's soft targets. The server runs the zoo teacher (F32 GGUF), so a student with the same
    weights must start at KL ~ 0 on the teacher's tokens, and a student with other weights must not."""
    from downsize.distill import SFTConfig, sft
    from downsize.errors import DownsizeError
    from downsize.export.gguf import export_gguf
    from downsize.models.refs import load_tokenizer
    from downsize.train.loop import TrainConfig
    from tiny_models import make_tiny_model, save_tiny

    gguf = tmp_path / "teacher-f32.gguf"
    export_gguf("zoo:coder-teacher", gguf, quant="F32")
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"def {name}(path):"}) + "\n"
                               for name in ("read_config", "parse_args", "load_table", "main", "walk", "copy_tree")))
    data = tmp_path / "kd.jsonl"
    srv = LlamaServer(gguf, log=tmp_path / "server.log").start()
    try:
        generate(GenerateConfig(teacher=srv.ref, out=str(data), prompts=str(prompts), n_negative=0, in_flight=2,
                                params=GenParams(max_tokens=32, top_logprobs=5, max_retries=1)))
    finally:
        srv.stop()
    tok = load_tokenizer("zoo:coder-teacher")
    other = save_tiny(make_tiny_model("llama", tok, seed=7), tok, tmp_path / "other")

    def first_step(student, name):
        out = tmp_path / name
        sft(student, str(data), SFTConfig(train=TrainConfig(steps=1, batch_size=6, lr=1e-9, warmup_steps=0, progress=False,
                                                            log_every=1, mixed_precision="no"), max_seq_len=1024,
                                          logprob_kd=0.5), out)
        (m,) = [json.loads(x) for x in (out.with_name(out.name + ".work") / "metrics.jsonl").read_text().splitlines()]
        return m, json.loads((out / "distill_card.json").read_text())

    same, card = first_step("zoo:coder-teacher", "same")
    # the assistant tokens are the teacher's own (plus each turn's end-of-turn tokens, which have no logprobs)
    assert same["kd_tokens"] >= same["assistant_tokens"] - 3 * 6, same
    assert same["kd"] < 1e-4, same  # the student's own distribution over the teacher's top 5 + tail
    assert "forward KL to the teacher's stored top-k" in card["loss"]
    diff, _ = first_step(str(other), "other-sft")  # not over its own input folder (refused: downsize did not write it)
    assert diff["kd_tokens"] == same["kd_tokens"] and diff["kd"] > 0.1, diff
    # data without stored logprobs: asking for logit KD is a clear error
    plain = tmp_path / "plain.jsonl"
    plain.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ok"}]}) + "\n")
    with pytest.raises(DownsizeError, match="stored top-k logprobs"):
        sft("zoo:coder-teacher", str(plain), SFTConfig(train=TrainConfig(steps=1), logprob_kd=0.5), tmp_path / "x")
