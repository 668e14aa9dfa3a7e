"""--report-to through accelerate's trackers: TensorBoard event files hold exactly what metrics.jsonl holds;
W&B runs offline when installed; a clear error when a tracker is unknown or missing."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from downsize.errors import DownsizeError
from train_streams import SyntheticStream as _Stream

from downsize.train.loop import TRACKER_DIR, TRACKER_PROJECT, TrainConfig, lm_loss, parse_report_to, train

ROOT = Path(__file__).resolve().parents[2]


def _cfg(**kw):
    return TrainConfig(steps=6, batch_size=2, lr=1e-2, warmup_steps=1, log_every=2, progress=False,
                       mixed_precision="no", **kw)


def test_tensorboard_event_files_match_metrics_jsonl(tiny_tokenizer, tmp_path, make_model):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train(make_model("llama", tiny_tokenizer), lm_loss, _Stream(), _cfg(report_to="tensorboard"), tmp_path)
    logdir = tmp_path / TRACKER_DIR / TRACKER_PROJECT
    assert list(logdir.glob("events.out.tfevents.*")), list(tmp_path.rglob("*"))
    ea = EventAccumulator(str(logdir))
    ea.Reload()
    recs = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in recs] == [2, 4, 6]
    for key in ("loss", "lr", "tok_s", "tokens"):
        events = ea.Scalars(key)
        assert [e.step for e in events] == [r["step"] for r in recs], key
        # TensorBoard stores float32
        assert [e.value for e in events] == pytest.approx([r[key] for r in recs], rel=1e-6), key


def test_no_tracker_by_default_writes_no_event_files(tiny_tokenizer, tmp_path, make_model):
    train(make_model("llama", tiny_tokenizer), lm_loss, _Stream(), _cfg(), tmp_path)
    assert not list(tmp_path.rglob("events.out.tfevents.*")) and (tmp_path / "metrics.jsonl").exists()


def test_report_to_parsing_and_errors(monkeypatch):
    assert parse_report_to("tensorboard") == ("tensorboard",)
    assert parse_report_to("none") == parse_report_to(None) == parse_report_to("") == ()
    assert parse_report_to(["tensorboard", "tensorboard"]) == ("tensorboard",)
    with pytest.raises(DownsizeError, match="unknown tracker 'mlflow'") as e:
        TrainConfig(steps=1, report_to="mlflow")
    assert "tensorboard" in e.value.hint and "wandb" in e.value.hint
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(DownsizeError, match="wandb package is not installed") as e:
        TrainConfig(steps=1, report_to="tensorboard,wandb")
    assert "pip install wandb" in e.value.hint


@pytest.mark.skipif(importlib.util.find_spec("wandb") is None, reason="wandb is optional and not installed")
def test_wandb_offline_run(tiny_tokenizer, tmp_path, make_model, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    train(make_model("llama", tiny_tokenizer), lm_loss, _Stream(), _cfg(report_to="wandb"), tmp_path)
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb")), list(tmp_path.rglob("*"))


@pytest.mark.slow  # 15 s; the event files themselves are checked by the first test here (the suite keeps under 10 min)
def test_cli_distill_report_to_tensorboard(tmp_path, tiny_model_dir, stdlib_texts):
    data = tmp_path / "data.txt"
    data.write_text("\n".join(stdlib_texts[:3])[:15000])
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "downsize.cli", "distill", "--teacher", str(tiny_model_dir), "--student",
                        str(tiny_model_dir), "--data", str(data), "--out", "s", "--steps", "2", "--batch-size", "2",
                        "--seq-len", "32", "--warmup", "1", "--mixed-precision", "no", "--report-to", "tensorboard"],
                       capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert list((tmp_path / "s.work" / TRACKER_DIR / TRACKER_PROJECT).glob("events.out.tfevents.*"))
    bad = subprocess.run([sys.executable, "-m", "downsize.cli", "distill", "--teacher", str(tiny_model_dir), "--student",
                          str(tiny_model_dir), "--out", "t", "--report-to", "tensorbored"],
                         capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert bad.returncode == 2 and "unknown tracker 'tensorbored'" in bad.stderr and "Traceback" not in bad.stderr
