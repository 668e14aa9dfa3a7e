"""Recipes end to end on a tiny model: validate, plan, run, skip-unchanged, --from, overrides, report."""

import json

import pytest
import yaml

from downsize.errors import DownsizeError
from downsize.pipeline import plan_recipe, run_recipe
from downsize.recipe import RecipeError, load_recipe


@pytest.fixture()
def recipe_file(tmp_path, tiny_model_dir, stdlib_texts):
    data = tmp_path / "data.txt"
    data.write_text("\n".join(stdlib_texts[:4])[:20000])
    raw = {"name": "tiny", "teacher": str(tiny_model_dir), "data": str(data), "seed": 0, "stages": [
        {"train": {"name": "ce", "steps": 4, "batch_size": 2, "seq_len": 32, "warmup_steps": 1, "checkpoint_every": 2}},
        {"train": {"name": "ce-more", "input": "ce", "steps": 2, "batch_size": 2, "seq_len": 32, "warmup_steps": 1}},
        {"eval": {"max_tokens": 512, "seq_len": 32, "speed": False}},
    ]}
    p = tmp_path / "recipe.yaml"
    p.write_text(yaml.safe_dump(raw))
    return p


def test_validate_reports_every_error_with_its_path(tmp_path, tiny_model_dir):
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump({"name": "bad", "teacher": str(tiny_model_dir), "stages": [
        {"prune": {"method": "wanda"}},
        {"distill": {"loss": "fkll", "stepz": 3}},
        {"quantize": {"quant": "Q4_K_X", "input": "later"}},
        {"frobnicate": {}},
    ]}))
    with pytest.raises(RecipeError) as e:
        load_recipe(p)
    errs = e.value.errors
    assert "stages[1].distill.loss: unknown 'fkll'; choose one of fkl, rkl, jsd, skl, srkl, tvd" in errs
    assert "stages[1].distill.stepz: unknown setting (not allowed here) (did you mean 'steps'?)" in errs
    assert any(x.startswith("stages[2].quantize.quant: unknown 'Q4_K_X'") for x in errs)
    assert any(x.startswith("stages[2].quantize.input: 'later' is not an earlier stage") for x in errs)
    assert any(x.startswith("stages[3]: unknown stage kind 'frobnicate'") for x in errs)
    # the prune stage's own rule (the engine's check, so validate and run agree), also with --no-check-refs
    assert "stages[0].prune: wanda needs exactly one of sparsity and nm (e.g. --sparsity 0.5 or --nm 2:4)" in errs
    with pytest.raises(RecipeError) as e2:
        load_recipe(p, check_refs=False)
    assert "stages[0].prune: wanda needs exactly one of sparsity and nm (e.g. --sparsity 0.5 or --nm 2:4)" in e2.value.errors
    assert len(errs) == 6


def test_overrides(recipe_file):
    r = load_recipe(recipe_file, ["stages.0.train.steps=7", "seed=3"])
    assert r.stages[0].settings.steps == 7 and r.seed == 3
    with pytest.raises(DownsizeError, match="does not exist in the recipe"):
        load_recipe(recipe_file, ["stages.9.train.steps=7"])
    with pytest.raises(DownsizeError, match="is not key=value"):
        load_recipe(recipe_file, ["steps"])


def test_plan_lists_reads_and_writes(recipe_file):
    rows = plan_recipe(load_recipe(recipe_file))
    assert [r["reads"] for r in rows] == ["teacher", "ce", "every model so far"]
    assert rows[0]["writes"] == "00-ce/output" and "tokens" in rows[0]["cost"]


def test_run_skip_from_and_report(recipe_file, tmp_path):
    run_dir = tmp_path / "run"
    logs = []
    m1 = run_recipe(load_recipe(recipe_file), run_dir, log=logs.append)
    assert [s["status"] for s in m1["stages"]] == ["done"] * 3
    # every stage's metrics reach the manifest (the training stages' from their output card)
    assert all(s["metrics"] for s in m1["stages"]) and m1["stages"][0]["metrics"]["train_loss"] > 0
    assert (run_dir / "00-ce" / "output" / "model.safetensors").exists()
    rows = m1["stages"][2]["metrics"]["models"]
    assert set(rows) == {"teacher", "ce", "ce-more"}
    assert rows["teacher"]["kl_to_teacher"] == pytest.approx(0, abs=1e-6)
    assert rows["teacher"]["top1_agreement"] == 1.0
    assert rows["ce"]["perplexity"] < rows["teacher"]["perplexity"]  # training on the data helps
    html = (run_dir / "report.html").read_text()
    assert "<svg" in html and "Waterfall" in html and (run_dir / "report.md").exists()
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert all(not s["dir"].startswith("/") and (s["output"] is None or not s["output"].startswith("/"))
               for s in manifest["stages"])

    logs.clear()
    m2 = run_recipe(load_recipe(recipe_file), run_dir, log=logs.append)
    assert all(s.get("skipped") for s in m2["stages"]), logs

    logs.clear()
    m3 = run_recipe(load_recipe(recipe_file), run_dir, from_stage="ce-more", log=logs.append)
    assert m3["stages"][0].get("skipped") and not m3["stages"][1].get("skipped")

    # a changed setting invalidates that stage and everything that reads it
    m4 = run_recipe(load_recipe(recipe_file, ["stages.0.train.lr=0.002"]), run_dir, log=logs.append)
    assert not any(s.get("skipped") for s in m4["stages"])


def test_prune_distill_quantize_eval_on_a_tiny_model(tmp_path, tiny_model_dir, stdlib_texts):
    data = tmp_path / "data.txt"
    data.write_text("\n".join(stdlib_texts[:4])[:20000])
    raw = {"name": "tiny-full", "teacher": str(tiny_model_dir), "data": str(data), "stages": [
        {"prune": {"name": "pruned", "method": "width", "targets": {"ffn": 64}, "calib_samples": 4, "seq_len": 32}},
        {"distill": {"name": "distilled", "loss": "jsd", "steps": 3, "batch_size": 2, "seq_len": 32, "warmup_steps": 1}},
        {"quantize": {"name": "q8", "quant": "Q8_0"}},
        {"export": {"name": "ollama", "model_name": "tiny-kd"}},
        {"eval": {"max_tokens": 256, "seq_len": 32, "speed": True, "samples": True}},
    ]}
    p = tmp_path / "r.yaml"
    p.write_text(yaml.safe_dump(raw))
    m = run_recipe(load_recipe(p), tmp_path / "run", log=lambda s: None)
    assert all(s["metrics"] for s in m["stages"])  # prune, distill (its card), quantize, export, eval
    assert m["stages"][1]["metrics"]["train_loss"] > 0
    rows = m["stages"][-1]["metrics"]["models"]
    assert set(rows) == {"teacher", "pruned", "distilled", "q8"}  # the export's GGUF is q8's, measured once
    assert rows["pruned"]["params"] < rows["teacher"]["params"]
    assert rows["q8"]["backend"] == "llama.cpp"
    # Q8_0 of the distilled model stays close to it: same tokenizer, near-identical distribution
    assert rows["q8"]["perplexity"] == pytest.approx(rows["distilled"]["perplexity"], rel=0.05)
    assert rows["q8"]["top1_agreement"] is not None
    for r in rows.values():
        assert r["gen_tok_s"] > 0 and r["peak_rss_mb"] > 0
    assert (tmp_path / "run" / "02-q8" / "model-q8_0.gguf").exists()
    export = m["stages"][3]["metrics"]
    modelfile = (tmp_path / "run" / export["modelfile"]).read_text()
    assert modelfile.startswith("FROM ./tiny-kd.q8_0.gguf") and "TEMPLATE" in modelfile and "<|im_end|>" in modelfile
    assert export["ollama_command"] == "ollama create tiny-kd -f 03-ollama/Modelfile"
    report = (tmp_path / "run" / "report.md").read_text()
    assert "ollama create tiny-kd" in report and "| q8 | llama.cpp |" in report
