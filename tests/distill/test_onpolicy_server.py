"""On-policy distillation from a teacher behind a real llama.cpp server (llama-cpp-python's, on 127.0.0.1)
serving the zoo teacher exported to GGUF F32 by downsize, against the same teacher run locally in fp32."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from downsize.distill import DistillConfig, LossSpec, OnPolicy, distill
from downsize.distill.losses import IGNORE_INDEX, TopK, kd_loss, tail_logp, topk_from_logits
from downsize.distill.onpolicy import ServerDown, ServerSpec, ServerTeacher, retokenize
from downsize.distill.teacher import sample
from downsize.distill.train import WindowData, _student_rows, load_stream
from downsize.distill.student import derive_config
from downsize.distill.save import save_model
from downsize.errors import DownsizeError
from downsize.models.refs import load_model
from downsize.train.loop import TrainConfig

from generate.llamacpp import LlamaServer, free_port

pytest.importorskip("llama_cpp")
TEACHER = "zoo:coder-teacher"
K = 8
# GGUF F32 in llama.cpp and torch fp32 differ by summation order only: measured |Δ logp| <= 4e-4.
LOSS_RTOL = 2e-3
# The server names no id for a piece of a UTF-8 character (its top-k is keyed by text): measured 0.6 % on this batch.
TOPK_RTOL = 0.02


@pytest.fixture(scope="module")
def teacher():
    model, tok = load_model(TEACHER)
    return model.eval(), tok


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from downsize.export.gguf import export_gguf

    d = tmp_path_factory.mktemp("opd")
    gguf = d / "teacher-f32.gguf"
    export_gguf(TEACHER, gguf, quant="F32")
    srv = LlamaServer(gguf, log=d / "server.log", n_ctx=512).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def student_dir(teacher, tmp_path_factory):
    """A random-init student from the teacher's config (2 layers, width 128): same tokenizer."""
    from transformers import AutoModelForCausalLM

    model, tok = teacher
    cfg = derive_config(model.config, {"num_hidden_layers": 2, "hidden_size": 128, "num_attention_heads": 4,
                                       "num_key_value_heads": 2})
    torch.manual_seed(0)
    s = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    return save_model(s, tok, tmp_path_factory.mktemp("student") / "s", {"name": "s", "stage": "test"}, "float32")


def _config(steps: int, **kw) -> DistillConfig:
    train = TrainConfig(steps=steps, batch_size=4, lr=3e-3, warmup_steps=1, mixed_precision="fp32", progress=False,
                        log_every=1)
    return DistillConfig(train=train, loss=LossSpec("fkl"), seq_len=48,
                         on_policy=OnPolicy(lmbda=1.0, prompt_len=16, new_tokens=32), **kw)


def test_step0_server_loss_equals_local_teacher_loss(server, teacher, student_dir):
    t_model, tok = teacher
    student, _ = load_model(str(student_dir))
    data = WindowData(load_stream(tok, "zoo:stdlib", "train"), 48, seed=0)
    prompts = data.batch(0, 4)["input_ids"][:, :16]
    sampled = sample(student, prompts, 32, torch.Generator().manual_seed(0))
    ids, labels = retokenize(tok, sampled, 16, tok.eos_token_id)
    st = ServerTeacher(server.ref, tok, ServerSpec(top_k=K, in_flight=4))
    try:
        assert (st.dialect, st.bos, st.shift) == ("llama-cpp-python", False, 1)
        remote, remote_tok, scored = st.score(ids)
    finally:
        st.close()
    tgt = labels[:, 1:].reshape(-1)
    assert bool(scored[tgt != IGNORE_INDEX].all()), "every sampled token must be scored"
    with torch.no_grad():
        logits = t_model(input_ids=ids).logits[:, :-1].reshape(-1, t_model.config.vocab_size)
        local = topk_from_logits(logits, K)
        local_tok = logits.log_softmax(-1).gather(1, tgt.clamp_min(0)[:, None]).squeeze(1)
        # the local teacher on the ids the server named (its top-k, less the pieces of UTF-8 characters it cannot name)
        local_logp = logits.log_softmax(-1)
        named = TopK(local_logp.gather(1, remote.ids), remote.ids, tail_logp(local_logp.gather(1, remote.ids)))
        rows = _student_rows(student, ids, _config(1))
        l_remote, _ = kd_loss(rows, remote, tgt, LossSpec("fkl"))
        l_named, _ = kd_loss(rows, named, tgt, LossSpec("fkl"))
        l_local, _ = kd_loss(rows, local, tgt, LossSpec("fkl"))
    assert math.isclose(float(l_remote), float(l_named), rel_tol=LOSS_RTOL), (float(l_remote), float(l_named))
    # against the local top-k itself: the byte-piece ids the server cannot name fall into the tail bucket
    assert math.isclose(float(l_remote), float(l_local), rel_tol=TOPK_RTOL), (float(l_remote), float(l_local))
    valid = tgt != IGNORE_INDEX
    same = (remote.ids[valid].sort(-1).values == local.ids[valid].sort(-1).values).all(-1).float().mean()
    assert same > 0.9, same
    # The log-prob of the next token is exact where the server named it among its top-k (elsewhere it is a tail
    # estimate); a random student's samples rarely are, the data's own tokens mostly are.
    text = data.batch(1, 4)["input_ids"]
    st = ServerTeacher(server.ref, tok, ServerSpec(top_k=K, in_flight=4))
    try:
        remote, remote_tok, scored = st.score(text)
    finally:
        st.close()
    nxt = text[:, 1:].reshape(-1)
    with torch.no_grad():
        local_tok = t_model(input_ids=text).logits[:, :-1].log_softmax(-1).reshape(-1, t_model.config.vocab_size)
        local_tok = local_tok.gather(1, nxt[:, None]).squeeze(1)
    in_top = scored & ((remote.ids == nxt[:, None]) & (remote.logp > -1e3)).any(-1)
    assert int(in_top.sum()) > 0.5 * len(nxt), int(in_top.sum())
    assert torch.allclose(remote_tok[in_top], local_tok[in_top], atol=2e-3)
    assert bool((remote_tok[scored & ~in_top] <= remote.logp[scored & ~in_top].min(-1).values).all())


def test_server_opd_lowers_perplexity_like_local_opd(server, student_dir, tmp_path):
    from downsize.eval.perplexity import perplexity

    model, tok = load_model(str(student_dir))
    val = load_stream(tok, "zoo:stdlib", "validation")
    before = perplexity(model, val, seq_len=48, batch_size=8, max_tokens=4096).perplexity
    n = 4
    remote = distill(server.ref, str(student_dir), "zoo:stdlib", _config(n, server=ServerSpec(top_k=K)),
                     tmp_path / "remote", eval_tokens=None)
    local = distill(TEACHER, str(student_dir), "zoo:stdlib", _config(n), tmp_path / "local", eval_tokens=None)
    after = {name: perplexity(load_model(str(p))[0], val, seq_len=48, batch_size=8, max_tokens=4096).perplexity
             for name, p in (("remote", remote), ("local", local))}
    drop = {k: math.log(before) - math.log(v) for k, v in after.items()}
    assert drop["local"] > 0.05 and drop["remote"] > 0.05, (before, after)
    assert drop["remote"] > 0.5 * drop["local"], (before, after)  # top-k KD from the server: most of the dense gain


def test_server_with_another_tokenizer_is_refused(tiny_model_dir, tmp_path, student_dir):
    from downsize.export.gguf import export_gguf

    gguf = tmp_path / "tiny.gguf"
    export_gguf(str(tiny_model_dir), gguf, quant="F32")
    srv = LlamaServer(gguf, log=tmp_path / "server.log").start()
    try:
        with pytest.raises(DownsizeError, match="tokenizer differs from the student's"):
            distill(srv.ref, str(student_dir), "zoo:stdlib", _config(1, server=ServerSpec(top_k=K)), tmp_path / "o")
    finally:
        srv.stop()
    assert not (tmp_path / "o").exists()


def test_dead_server_stops_with_a_checkpoint_and_resumes(server, student_dir, tmp_path, monkeypatch):
    """The server is SIGKILLed after step 2; the run stops with a checkpoint at step 2 and --resume finishes it."""
    from downsize.train.loop import latest_checkpoint

    cfg = _config(4, server=ServerSpec(top_k=K, max_retries=1, timeout_s=10))
    cfg = replace(cfg, train=replace(cfg.train, checkpoint_every=100))
    srv = LlamaServer(server.gguf, log=server.log, port=free_port(), n_ctx=512).start()
    calls = {"n": 0}
    orig = ServerTeacher.score

    def score_then_die(self, ids):  # the real server dies between two steps, as an OOM kill would do it
        calls["n"] += 1
        if calls["n"] == 3:
            srv.kill()
        return orig(self, ids)

    monkeypatch.setattr(ServerTeacher, "score", score_then_die)
    with pytest.raises(ServerDown, match="resume"):
        distill(srv.ref, str(student_dir), "zoo:stdlib", cfg, tmp_path / "o", eval_tokens=None)
    monkeypatch.undo()
    ck = latest_checkpoint(tmp_path / "o.work")
    assert ck is not None and ck.name == "step-00000002"
    srv.start()
    try:
        out = distill(srv.ref, str(student_dir), "zoo:stdlib", cfg, tmp_path / "o", resume=True, eval_tokens=None)
    finally:
        srv.stop()
    assert (out / "model.safetensors").exists()


@pytest.mark.slow  # over 10 s: the default suite must stay under 10 minutes
def test_server_opd_recipe_runs_end_to_end(server, tmp_path):
    """recipes/server-opd.yaml against the test's server: prune, server OPD (top-k + k3), eval."""
    import json
    from pathlib import Path

    from downsize.pipeline import run_recipe
    from downsize.recipe import load_recipe

    path = Path(__file__).parents[2] / "recipes" / "server-opd.yaml"
    r = load_recipe(path, [f"stages.1.distill.teacher={server.ref}", "stages.1.distill.steps=2",
                           "stages.0.prune.calib_samples=8", "stages.2.eval.max_tokens=1024", "stages.2.eval.speed=false",
                           "stages.2.eval.samples=false"])
    run_recipe(r, tmp_path / "run")
    (card_path,) = (tmp_path / "run").rglob("distill_card.json")
    card = json.loads(card_path.read_text())
    assert card["teacher"] == server.ref and card["teacher_mode"] == "online (server)"
    assert card["server"]["sampled_kl"] == "k3" and card["steps"] == 2
    assert math.isfinite(card["final_metrics"]["sampled_kl"]) and card["final_metrics"]["kd"] > 0
