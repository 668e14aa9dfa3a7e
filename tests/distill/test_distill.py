"""End-to-end distillation on tiny real models: online, offline cache, on-policy, vocab handling, ULD, SFT."""

import json
import logging

import pytest
import torch
from safetensors.torch import load_file

from downsize.distill import (DistillConfig, LossSpec, OnPolicy, SFTConfig, StudentSpec, TopKCacheDataset,
                              assistant_labels, cache_teacher, distill, sft)
from downsize.distill.losses import IGNORE_INDEX, topk_from_logits, uld_distance
from downsize.distill.teacher import sample
from downsize.distill.student import derive_config
from downsize.distill.vocab import offset_pairs, plan_vocab
from downsize.errors import DownsizeError
from downsize.models.refs import load_model
from downsize.train.loop import LoraSpec, TrainConfig

TC = dict(batch_size=2, warmup_steps=1, progress=False, log_every=1)


def _metrics(out):
    return [json.loads(x) for x in (out.with_name(out.name + ".work") / "metrics.jsonl").read_text().splitlines()]


def test_online_distill_writes_hf_dir_with_card(tiny_model_dir, text_data, tmp_path):
    cfg = DistillConfig(train=TrainConfig(steps=6, lr=3e-3, **TC), loss=LossSpec("fkl", kd_ratio=0.5), seq_len=32,
                        windows=16)
    out = distill(str(tiny_model_dir), StudentSpec.derived(num_hidden_layers=1, hidden_size=32), str(text_data), cfg,
                  tmp_path / "student")
    for f in ("model.safetensors", "config.json", "tokenizer.json", "generation_config.json", "README.md", "distill_card.json"):
        assert (out / f).exists(), f
    card = json.loads((out / "distill_card.json").read_text())
    assert card["teacher"] == str(tiny_model_dir) and card["data"] == str(text_data)
    assert card["loss"]["name"] == "fkl" and card["steps"] == 6 and card["tokens"] == 6 * 2 * 32
    assert {"train_loss", "kd", "ce"} <= set(card["final_metrics"])
    model, tok = load_model(out)
    assert model.config.num_hidden_layers == 1 and model.config.hidden_size == 32 and model.config.head_dim == 8
    m = _metrics(out)
    assert m[-1]["kd"] < m[0]["kd"]


def test_student_spec_parsing_and_refusals():
    s = StudentSpec.parse("teacher:num_hidden_layers=4,hidden_size=192")
    assert s.ref is None and dict(s.overrides) == {"num_hidden_layers": 4, "hidden_size": 192}
    assert StudentSpec.parse("runs/x").ref == "runs/x"
    from transformers import LlamaConfig

    t = LlamaConfig(hidden_size=384, intermediate_size=1024, num_attention_heads=6, num_key_value_heads=2, num_hidden_layers=6)
    c = derive_config(t, {"hidden_size": 192, "num_hidden_layers": 4})
    assert c.intermediate_size == 512 and c.head_dim == 32 and t.hidden_size == 384
    with pytest.raises(DownsizeError, match="no field"):
        derive_config(t, {"hidden": 3})
    with pytest.raises(DownsizeError, match="divisible"):
        derive_config(t, {"hidden_size": 100})
    from transformers import Qwen2Config  # per-layer lists follow the depth, else the config does not save

    q = Qwen2Config(hidden_size=64, intermediate_size=128, num_attention_heads=4, num_key_value_heads=2,
                    num_hidden_layers=4)
    assert derive_config(q, {"num_hidden_layers": 1}).layer_types == ["full_attention"]
    derive_config(q, {"num_hidden_layers": 6}).validate()


def test_offline_cache_matches_teacher_and_trains_without_it(tiny_model_dir, text_data, tmp_path):
    teacher, tok = load_model(tiny_model_dir)
    meta = cache_teacher(str(tiny_model_dir), str(text_data), tmp_path / "cache", k=8, seq_len=32, windows=10,
                         shard_windows=4, dtype="fp32")
    assert meta["complete"] and len(meta["shards"]) == 3
    assert 36 <= meta["bytes_per_token"] < 40  # fp16 values + int16 ids (8 × 4) + fp32 tail (4) + shard headers
    ds = TopKCacheDataset(tmp_path / "cache", seed=0)
    b = ds.batch(3, 2)
    with torch.no_grad():
        logits = teacher(input_ids=b["input_ids"]).logits[:, :-1]
    ref = topk_from_logits(logits.reshape(-1, logits.shape[-1]), 8)
    torch.testing.assert_close(b["teacher_logp"].reshape(-1, 8).float(), ref.logp, atol=2e-3, rtol=1e-3)
    assert torch.equal(b["teacher_ids"].reshape(-1, 8).long(), ref.ids)
    torch.testing.assert_close(b["teacher_tail"].reshape(-1), ref.tail_logp, atol=1e-5, rtol=1e-5)
    # the windows and their order are those of the online run over the same windows
    from downsize.distill.train import WindowData, load_stream

    online = WindowData(load_stream(tok, str(text_data)), 32, seed=0, windows=10)
    assert torch.equal(online.batch(3, 2)["input_ids"], b["input_ids"])
    # an interrupted cache continues at the first missing shard and ends identical
    first = load_file(str(tmp_path / "cache" / meta["shards"][-1]))
    (tmp_path / "cache" / meta["shards"][-1]).unlink()
    man = json.loads((tmp_path / "cache" / "manifest.json").read_text())
    man.update(shards=man["shards"][:-1], complete=False)
    (tmp_path / "cache" / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(DownsizeError, match="incomplete"):
        TopKCacheDataset(tmp_path / "cache")
    cache_teacher(str(tiny_model_dir), str(text_data), tmp_path / "cache", k=8, seq_len=32, windows=10, shard_windows=4,
                  dtype="fp32")
    again = load_file(str(tmp_path / "cache" / meta["shards"][-1]))
    assert all(torch.equal(first[k], again[k]) for k in first)
    # offline training: the teacher is never loaded (a bogus reference would fail if it were)
    cfg = DistillConfig(train=TrainConfig(steps=4, lr=3e-3, **TC), loss=LossSpec("rkl"), cache=str(tmp_path / "cache"),
                        seq_len=32)
    student_dir = tmp_path / "s0"
    out = distill(None, str(tiny_model_dir), str(text_data), cfg, student_dir)
    card = json.loads((out / "distill_card.json").read_text())
    assert card["teacher_mode"].startswith("offline") and card["teacher"] == str(tiny_model_dir)
    assert _metrics(out)[-1]["kd"] >= 0


def test_on_policy_samples_from_student_and_is_seeded(tiny_model_dir, text_data, tmp_path, tiny_tokenizer, make_model):
    m = make_model("llama", tiny_tokenizer, seed=3)
    prompt = torch.randint(0, 500, (2, 5))
    a = sample(m, prompt, 7, torch.Generator().manual_seed(1))
    b = sample(m, prompt, 7, torch.Generator().manual_seed(1))
    assert a.shape == (2, 12) and torch.equal(a, b) and torch.equal(a[:, :5], prompt)
    cfg = DistillConfig(train=TrainConfig(steps=3, lr=3e-3, **TC), loss=LossSpec("jsd", beta=0.5), seq_len=32,
                        windows=8, on_policy=OnPolicy(lmbda=1.0, prompt_len=8, new_tokens=8))
    out = distill(str(tiny_model_dir), StudentSpec.derived(num_hidden_layers=1), str(text_data), cfg, tmp_path / "gkd")
    assert all(r.get("on_policy") == 1.0 for r in _metrics(out))
    cfg2 = DistillConfig(train=TrainConfig(steps=2, **TC), seq_len=32, windows=8,
                         on_policy=OnPolicy(lmbda=0.0, seq_kd=True, prompt_len=8, new_tokens=8))
    out2 = distill(str(tiny_model_dir), StudentSpec.derived(num_hidden_layers=1), str(text_data), cfg2, tmp_path / "skd")
    assert all(r.get("seq_kd") == 1.0 for r in _metrics(out2))


def test_vocab_same_tokenizer_padded_rows_aligned_and_logged(tiny_tokenizer, caplog):
    with caplog.at_level(logging.INFO):
        plan = plan_vocab(tiny_tokenizer, tiny_tokenizer, len(tiny_tokenizer) + 64, len(tiny_tokenizer))
    assert plan.shared == len(tiny_tokenizer) and "first" in caplog.text
    with pytest.raises(DownsizeError, match="vocab-align"):
        plan_vocab(tiny_tokenizer, tiny_tokenizer, len(tiny_tokenizer) + 64, len(tiny_tokenizer), vocab_align="off")
    assert plan_vocab(tiny_tokenizer, tiny_tokenizer, 512, 512).shared is None


@pytest.fixture(scope="module")
def other_tokenizer(stdlib_texts, tmp_path_factory):
    from transformers import AutoTokenizer

    from downsize.zoo.tokenizer import TokenizerSpec, train_bpe_tokenizer

    tok = train_bpe_tokenizer(stdlib_texts[5:30], TokenizerSpec(vocab_size=400, pretokenizer="qwen2"))
    d = tmp_path_factory.mktemp("other_tok")
    tok.save_pretrained(d)
    return AutoTokenizer.from_pretrained(d)


def test_different_tokenizers_error_names_both_and_the_ways_out(tiny_tokenizer, other_tokenizer):
    with pytest.raises(DownsizeError) as e:
        plan_vocab(tiny_tokenizer, other_tokenizer, len(tiny_tokenizer), len(other_tokenizer))
    text = e.value.message + e.value.hint
    assert "512 tokens" in text and "400 tokens" in text
    assert "uld" in text and "downsize generate" in text
    assert plan_vocab(tiny_tokenizer, other_tokenizer, 512, 400, cross_tokenizer="uld").mode == "uld"


def test_uld_cross_tokenizer_distillation(tiny_model_dir, other_tokenizer, text_data, tmp_path, make_model):

    p = torch.randn(4, 30).log_softmax(-1)
    assert uld_distance(p, p).abs().max() < 1e-6
    assert uld_distance(p, p[:, torch.randperm(30)]).abs().max() < 1e-6  # ids do not matter, only the shape
    assert (uld_distance(p, torch.randn(4, 50).log_softmax(-1)) > 0).all()
    text = "def add(a, b):\n    return a + b\n"
    teacher, ttok = load_model(tiny_model_dir)
    t_ids, s_ids, pairs = offset_pairs(text, ttok, other_tokenizer, 64, 64)
    assert len(pairs) >= 5
    for ti, si in pairs.tolist():
        assert ttok.decode(t_ids[: ti + 1]) == other_tokenizer.decode(s_ids[: si + 1])  # same text read so far
    student = make_model("qwen2", other_tokenizer, num_hidden_layers=1)
    cfg = DistillConfig(train=TrainConfig(steps=3, lr=3e-3, **TC), loss=LossSpec("fkl", kd_ratio=0.5), seq_len=32,
                        windows=8, cross_tokenizer="uld")
    out = distill(str(tiny_model_dir), (student, other_tokenizer), str(text_data), cfg, tmp_path / "uld")
    m = _metrics(out)
    assert all(r["aligned"] > 10 and r["kd"] > 0 for r in m)
    with pytest.raises(DownsizeError, match="different"):
        distill(str(tiny_model_dir), (make_model("qwen2", other_tokenizer, num_hidden_layers=1), other_tokenizer), str(text_data),
                DistillConfig(train=TrainConfig(steps=1, **TC), seq_len=32, windows=8), tmp_path / "no")


def test_sft_labels_assistant_tokens_only(tiny_tokenizer):
    msgs = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello there"},
            {"role": "user", "content": "bye"}, {"role": "assistant", "content": "goodbye"}]
    ids, labels = assistant_labels(tiny_tokenizer, msgs)
    kept = tiny_tokenizer.decode([t for t in labels if t != IGNORE_INDEX])
    assert kept == "hello there<|im_end|>\ngoodbye<|im_end|>\n"
    assert "hi" not in kept and "bye<" not in kept.replace("goodbye", "")


@pytest.mark.parametrize("lora", [False, True])
def test_sft_full_and_lora(tiny_model_dir, chat_jsonl, tmp_path, lora):
    cfg = SFTConfig(train=TrainConfig(steps=3, lr=5e-3, **TC), max_seq_len=64, lora=LoraSpec(r=4) if lora else None,
                    save_dtype="float32")
    out = sft(str(tiny_model_dir), str(chat_jsonl), cfg, tmp_path / "sft")
    base = load_file(str(tiny_model_dir / "model.safetensors"))
    got = load_file(str(out / "model.safetensors"))
    assert set(got) == set(base)  # merged: plain weights, no adapter tensors
    changed = [k for k in base if not torch.equal(base[k], got[k])]
    assert changed and (not lora or all("norm" not in k and "embed" not in k for k in changed))
    card = json.loads((out / "distill_card.json").read_text())
    assert card["stage"] == "sft" and card["examples"] == 7 and card["assistant_tokens"] > 20
    with pytest.raises(DownsizeError, match="assistant"):
        bad = tmp_path / "bad.jsonl"
        bad.write_text(json.dumps({"messages": [{"role": "user", "content": "x"}]}) + "\n")
        sft(str(tiny_model_dir), str(bad), cfg, tmp_path / "sft2")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU refusal")
def test_qlora_on_cpu_is_refused_with_the_way_out(tiny_model_dir, chat_jsonl, tmp_path):
    cfg = SFTConfig(train=TrainConfig(steps=1, **TC), lora=LoraSpec(r=4, quantize_base="nf4"))
    with pytest.raises(DownsizeError, match="CUDA") as e:
        sft(str(tiny_model_dir), str(chat_jsonl), cfg, tmp_path / "q")
    assert "--lora-r" in e.value.hint


def test_padded_student_vocab_is_aligned_end_to_end(tiny_model_dir, tiny_tokenizer, text_data, tmp_path, make_model):
    student = make_model("llama", tiny_tokenizer, num_hidden_layers=1)
    student.resize_token_embeddings(len(tiny_tokenizer) + 64)  # 576 rows, 512 tokens
    cfg = DistillConfig(train=TrainConfig(steps=2, **TC), seq_len=32, windows=8)
    out = distill(str(tiny_model_dir), student, str(text_data), cfg, tmp_path / "pad")
    card = json.loads((out / "distill_card.json").read_text())
    assert "first 512 ids" in card["vocab"] and "576" in card["vocab"]


def test_chunked_perplexity_equals_full_logits(tiny_family_dir, tiny_tokenizer, stdlib_texts):
    """The validation pass's chunked LM head (a few rows at a time, padding skipped) gives the full-logits NLL."""
    import numpy as np

    from downsize.data.packing import tokenize_documents
    from downsize.eval.perplexity import perplexity

    model, _ = load_model(tiny_family_dir)
    stream = np.asarray(tokenize_documents(tiny_tokenizer, stdlib_texts[:3]))[:1000]  # 1000 = 7 windows + a short one
    full = perplexity(model, stream, seq_len=128, batch_size=3)
    for rows in (1, 37, 10_000):
        r = perplexity(model, stream, seq_len=128, batch_size=3, chunk_rows=rows)
        assert r.tokens == full.tokens
        assert abs(r.nll - full.nll) < 1e-5, (rows, r.nll, full.nll)


def test_validation_pass_sized_or_off_and_checkpoints_removed(tiny_model_dir, tmp_path):
    """val_tokens sizes the closing pass (0 = off); a finished run's checkpoints go unless keep_work."""
    from downsize.train.loop import CHECKPOINTS

    base = dict(train=TrainConfig(steps=2, checkpoint_every=1, **TC), loss=LossSpec("fkl"), seq_len=32, windows=8)
    out = distill(str(tiny_model_dir), StudentSpec.derived(num_hidden_layers=1), "zoo:stdlib",
                  DistillConfig(**base, val_tokens=300), tmp_path / "a")
    fm = json.loads((out / "distill_card.json").read_text())["final_metrics"]
    assert fm["val_tokens"] == 300 - 10 and fm["val_perplexity"] > 1  # 32-token windows: 9 full + one of 12 (one target fewer each)
    work = out.with_name(out.name + ".work")
    assert not (work / CHECKPOINTS).exists() and (work / "metrics.jsonl").exists()
    out = distill(str(tiny_model_dir), StudentSpec.derived(num_hidden_layers=1), "zoo:stdlib",
                  DistillConfig(**base, val_tokens=0, keep_work=True), tmp_path / "b")
    assert "val_perplexity" not in json.loads((out / "distill_card.json").read_text())["final_metrics"]
    assert any((out.with_name(out.name + ".work") / CHECKPOINTS).glob("step-*"))
    with pytest.raises(DownsizeError, match="val_tokens"):
        DistillConfig(val_tokens=-1)


# ---- the teacher's next forward overlapped with the student's step (TeacherAhead) -------------------------

def _ahead_parts(tiny_model_dir, text_data, ahead: str, steps: int = 4):
    from downsize.distill.student import build_student
    from downsize.distill.teacher import OnlineTeacher
    from downsize.distill.ahead import with_teacher_ahead
    from downsize.distill.train import WindowData, load_stream, make_kd_loss
    from downsize.distill.vocab import VocabPlan

    teacher, tok = load_model(str(tiny_model_dir))
    torch.manual_seed(0)
    student, _, _ = build_student(StudentSpec.derived(num_hidden_layers=1, hidden_size=32), teacher, tok)
    cfg = DistillConfig(train=TrainConfig(steps=steps, lr=3e-3, mixed_precision="no", checkpoint_every=2, **TC),
                        loss=LossSpec("fkl", kd_ratio=0.5), seq_len=32, windows=16, teacher_ahead=ahead)
    online, plan = OnlineTeacher(teacher), VocabPlan("same", None, "")
    data = WindowData(load_stream(tok, str(text_data)), 32, 0, 16)
    return student, make_kd_loss(cfg, online, plan), with_teacher_ahead(cfg, online, student, data, plan), cfg


def test_teacher_ahead_trains_as_the_teacher_in_the_step_does(tiny_model_dir, text_data, tmp_path):
    from downsize.distill.ahead import TeacherAhead
    from downsize.train.loop import train

    runs = {}
    torch.set_num_threads(2)
    for ahead in ("on", "off"):
        logs = []
        student, loss_fn, source, cfg = _ahead_parts(tiny_model_dir, text_data, ahead)
        assert isinstance(source, TeacherAhead) == (ahead == "on")
        with source as data:
            train(student, loss_fn, data, cfg.train, tmp_path / ahead, on_log=logs.append)
            if ahead == "on":
                assert data.teacher_threads == 1 and torch.get_num_threads() == 1  # 2 threads split 1 + 1
        assert torch.get_num_threads() == 2  # restored on exit
        runs[ahead] = [x for r in logs for x in (r["loss"], r["kd"])]
    assert len(runs["on"]) == 2 * 4
    # the same batches and teacher; only the threads that computed the teacher's logits differ
    assert runs["on"] == pytest.approx(runs["off"], rel=1e-4)


def test_teacher_ahead_resumes_exactly(tiny_model_dir, text_data, tmp_path):
    from downsize.train.loop import train

    torch.set_num_threads(2)
    student, loss_fn, source, cfg = _ahead_parts(tiny_model_dir, text_data, "on")
    with source as data:
        train(student, loss_fn, data, cfg.train, tmp_path / "whole")
    whole = {k: v.clone() for k, v in student.state_dict().items()}

    def stop_at_3(rec):
        if rec["step"] == 3:
            raise KeyboardInterrupt  # after the checkpoint of step 2, before step 3's
    student, loss_fn, source, cfg = _ahead_parts(tiny_model_dir, text_data, "on")
    with pytest.raises(KeyboardInterrupt), source as data:
        train(student, loss_fn, data, cfg.train, tmp_path / "cut", on_log=stop_at_3)
    assert torch.get_num_threads() == 2  # the interrupted context gave its threads back
    student, loss_fn, source, cfg = _ahead_parts(tiny_model_dir, text_data, "on")
    with source as data:
        train(student, loss_fn, data, cfg.train, tmp_path / "cut", resume=True)
    for k, v in student.state_dict().items():
        assert torch.equal(v, whole[k]), k


def test_teacher_ahead_choices(tiny_model_dir, text_data):
    from downsize.distill.ahead import TeacherAhead

    for ahead, wrapped in (("auto", True), ("off", False)):  # auto: on for a teacher on the CPU
        assert isinstance(_ahead_parts(tiny_model_dir, text_data, ahead)[2], TeacherAhead) == wrapped
    with pytest.raises(DownsizeError, match="on-policy"):
        DistillConfig(on_policy=OnPolicy(lmbda=0.5), teacher_ahead="on")
    with pytest.raises(DownsizeError, match="auto, on or off"):
        DistillConfig(teacher_ahead="yes")
    torch.set_num_threads(1)  # one thread: the teacher runs when the step asks for it, nothing is split
    try:
        with _ahead_parts(tiny_model_dir, text_data, "on")[2] as data:
            b = data.batch(0, 2)
            assert data.teacher_threads == 0 and len(b["teacher_ahead"].result()) == 2 * 31
            assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(2)


def test_teacher_rows_are_the_same_whichever_thread_computes_them(tiny_model_dir, text_data):
    """TeacherAhead moves loss chunks of the teacher's log-probabilities between its thread and the step's:
    with equal thread counts the loss and the gradients are bit for bit the same for any split (which is
    what keeps a resumed run exact while the split adapts)."""
    from downsize.distill.losses import Head as H
    from downsize.distill.losses import kd_loss
    from downsize.distill.teacher import final_hidden, lm_head

    torch.set_num_threads(2)
    student, _, source, cfg = _ahead_parts(tiny_model_dir, text_data, "on")
    with source as data:
        ids = data.batch(0, 2)["input_ids"]
        results = []
        spec = data.loss = LossSpec("fkl", kd_ratio=0.5, chunk_size=16)  # 62 rows: 4 chunks, the last one short
        for chunks in (0, 1, 2, 8):
            t = data._pool.submit(data._rows, ids, chunks, []).result()
            assert t.logp.shape[0] == min(16 * chunks, 62)
            student.zero_grad()
            h = final_hidden(student, ids)[:, :-1]
            loss, _ = kd_loss(H(h.reshape(-1, h.shape[-1]), lm_head(student).weight), t, ids[:, 1:].reshape(-1), spec)
            loss.backward()
            results.append((loss.detach(), [p.grad.clone() for p in student.parameters() if p.grad is not None]))
    for loss, grads in results[1:]:
        assert torch.equal(loss, results[0][0])
        assert all(torch.equal(a, b) for a, b in zip(grads, results[0][1]))
