"""``downsize zoo train --init-from``: continue a shipped zoo model under a fresh warmup + cosine schedule;
the card says where it started, the passes in total and the validation curve (a few CPU steps)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from downsize.errors import DownsizeError
from downsize.models.refs import resolve_model
from downsize.zoo.train import CURVE_FILE, train_zoo_model

NAME = "coder-teacher-qwen"  # the smallest shipped model (4.2M)


def test_continue_from_shipped_weights_with_a_fresh_schedule(tmp_path):
    out = train_zoo_model(NAME, steps=4, out=tmp_path / "v2", seed=1, init_from=f"zoo:{NAME}", batch_size=2, lr=1e-4,
                          warmup_steps=2, mixed_precision="no", eval_every=2, eval_tokens=2048, final_eval_tokens=2048)
    card = json.loads((out / "zoo_card.json").read_text())
    t = card["training"]
    src = json.loads((resolve_model(f"zoo:{NAME}").path / "zoo_card.json").read_text())
    assert t["init_from"]["ref"] == f"zoo:{NAME}" and t["init_from"]["tokens_seen"] == src["training"]["tokens_seen"]
    assert t["passes_total"] > t["init_from"]["passes"] > 0.3 and t["steps"] == 4  # v1 of this model saw 0.33 passes
    assert t["schedule"].startswith("fresh linear warmup 2 steps + cosine") and "--init-from zoo:" + NAME in t["command"]
    assert [p["step"] for p in t["validation_curve"]] == [0, 2, 4]
    assert t["convergence"]["from_step"] == 4  # the first point at >= 75 % of the 4 steps
    assert "continued from" in (out / "README.md").read_text()
    # step 0 is the shipped model itself: its validation perplexity on the same tokens, before any update
    assert abs(t["validation_curve"][0]["val_perplexity"] - t["validation_curve"][-1]["val_perplexity"]) < 2
    curve = json.loads((out / CURVE_FILE).read_text())
    assert curve["validation"] == t["validation_curve"] and [r["step"] for r in curve["train"]][-1] == 4
    new, old = load_file(out / "model.safetensors"), load_file(resolve_model(f"zoo:{NAME}").path / "model.safetensors")
    assert new.keys() == old.keys() and all(new[k].dtype == torch.bfloat16 for k in new)
    moved = max(float((new[k].float() - old[k].float()).abs().max()) for k in new)
    assert 0 < moved < 0.05  # trained on from the shipped weights (lr 1e-4, 4 steps), not re-initialised


def test_init_from_another_shape_is_refused(tmp_path):
    with pytest.raises(DownsizeError, match="not this zoo model's shape"):
        train_zoo_model(NAME, steps=1, out=tmp_path / "x", init_from="zoo:coder-teacher", mixed_precision="no")
    assert not (tmp_path / "x").exists()
