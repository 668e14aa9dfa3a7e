"""The one loop: exact resume after a hard kill, 2 gloo processes == 1 process, NaN stop, LoRA merge."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from train_streams import SyntheticStream as _Stream

from downsize.train.loop import (LoraSpec, TrainConfig, TrainingDiverged, apply_lora, latest_checkpoint, lm_loss,
                                 merge_lora, train)

RUNNER = str(Path(__file__).with_name("runner.py"))
PY = sys.executable
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def _run(args, **kw):
    return subprocess.run([PY, RUNNER, *map(str, args)], env={**ENV, **kw.pop("env", {})}, capture_output=True,
                          text=True, timeout=120, **kw)


def _final(out: Path, steps: int):
    return load_file(str(out / "checkpoints" / f"step-{steps:08d}" / "trainable.safetensors"))


def test_resume_after_sigkill_matches_uninterrupted_run(tiny_stream_file, tmp_path):
    d = tiny_stream_file
    args = [d / "tok", d / "stream.npy"]
    ref = _run([*args, tmp_path / "ref", 8, 2])
    assert ref.returncode == 0, ref.stderr[-2000:]
    crashed = _run([*args, tmp_path / "crash", 8, 2, "--kill-at", 6])  # dies in step 6, after the step-4 checkpoint
    assert crashed.returncode == -9
    assert latest_checkpoint(tmp_path / "crash").name == "step-00000004"
    resumed = _run([*args, tmp_path / "crash", 8, 2, "--resume"])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming from" in resumed.stdout + resumed.stderr
    a, b = _final(tmp_path / "ref", 8), _final(tmp_path / "crash", 8)
    assert a.keys() == b.keys() and len(a) > 5
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # and the run really moved the weights
    first = load_file(str(tmp_path / "crash" / "checkpoints" / "step-00000006" / "trainable.safetensors"))
    assert any(not torch.equal(first[k], a[k]) for k in a)


@pytest.mark.slow  # over 10 s: the default suite must stay under 10 minutes
def test_two_gloo_processes_match_one(tiny_stream_file, tmp_path):
    d = tiny_stream_file
    args = [d / "tok", d / "stream.npy"]
    env = {"RUNNER_MP": "no"}
    one = _run([*args, tmp_path / "one", 4, 4], env=env)
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run([PY, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
                          RUNNER, *map(str, [*args, tmp_path / "two", 4, 2])], env={**ENV, **env},
                         capture_output=True, text=True, timeout=180)
    assert two.returncode == 0, two.stderr[-3000:]
    l1 = [json.loads(x)["loss"] for x in (tmp_path / "one" / "metrics.jsonl").read_text().splitlines()]
    l2 = [json.loads(x)["loss"] for x in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]
    assert len(l1) == len(l2) == 4
    assert l1 == pytest.approx(l2, rel=1e-4), (l1, l2)
    assert l1[-1] < l1[0]
    tok1 = [json.loads(x)["tokens"] for x in (tmp_path / "one" / "metrics.jsonl").read_text().splitlines()]
    tok2 = [json.loads(x)["tokens"] for x in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]
    assert tok1 == tok2
    a, b = _final(tmp_path / "one", 4), _final(tmp_path / "two", 4)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)


def test_nan_stops_with_clear_message_and_keeps_last_checkpoint(tiny_tokenizer, tmp_path, make_model):
    model = make_model("llama", tiny_tokenizer)
    calls = {"n": 0}

    def loss_fn(m, batch):
        calls["n"] += 1
        loss, met = lm_loss(m, batch)
        return (loss * float("nan") if calls["n"] == 4 else loss), met

    cfg = TrainConfig(steps=6, batch_size=2, warmup_steps=1, checkpoint_every=2, progress=False)
    with pytest.raises(TrainingDiverged) as e:
        train(model, loss_fn, _Stream(), cfg, tmp_path)
    assert "step 3" in e.value.message and "step-00000002" in e.value.hint
    assert latest_checkpoint(tmp_path).name == "step-00000002"
    assert not (tmp_path / "checkpoints" / "step-00000006").exists()


def test_lora_trains_adapters_only_and_merges(tiny_tokenizer, tmp_path, make_model):
    base = make_model("llama", tiny_tokenizer)
    before = {k: v.clone() for k, v in base.state_dict().items()}
    model = apply_lora(base, LoraSpec(r=4, target_modules=("q_proj", "v_proj", "up_proj")))
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    train(model, lm_loss, _Stream(), TrainConfig(steps=4, batch_size=2, lr=1e-2, warmup_steps=1, progress=False, mixed_precision="no"), tmp_path)
    ck = load_file(str(latest_checkpoint(tmp_path) / "trainable.safetensors"))
    assert ck and all("lora_" in k for k in ck)
    x = _Stream().batch(0, 2)["input_ids"]
    with torch.no_grad():
        want = model(input_ids=x).logits
    merged = merge_lora(model)
    assert not any("lora" in k for k in merged.state_dict())
    with torch.no_grad():
        got = merged(input_ids=x).logits
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    changed = [k for k in before if "q_proj" in k and not torch.equal(before[k], merged.state_dict()[k])]
    assert changed  # the adapters were folded into the base weights
    with pytest.raises(Exception, match="linear layers are named"):
        apply_lora(make_model("llama", tiny_tokenizer), LoraSpec(target_modules=("nope",)))
