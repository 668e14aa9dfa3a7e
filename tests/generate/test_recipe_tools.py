"""The 30B -> 7B tool-use plan as one recipe, on tiny stand-ins: a teacher endpoint writes tool-calling traces
over a real codebase -> LoRA SFT of the student on them -> merge -> eval with a tool-use suite made from the
codebase (ids disjoint from the traces) -> the report's tool-use table beside the waterfall."""

import json

import yaml

from tiny_models import make_tiny_model, save_tiny
from downsize.pipeline import run_recipe
from downsize.recipe import load_recipe


def test_tool_use_recipe_end_to_end(tmp_path, tiny_tokenizer, codebase, teacher_server):
    # a tiny student with room for a tool-calling conversation (the system prompt lists the tools)
    tiny_model_dir = save_tiny(make_tiny_model("llama", tiny_tokenizer, max_position_embeddings=2048), tiny_tokenizer,
                               tmp_path / "student")
    endpoint = f"openai:{teacher_server.url}#rule-agent"
    raw = {"name": "tools-tiny", "teacher": str(tiny_model_dir), "data": str(codebase), "seed": 0, "stages": [
        {"generate": {"name": "traces", "teacher": endpoint, "codebase": str(codebase), "tools": True, "n_codebase": 12,
                      "concurrency": 2}},
        {"lora": {"name": "student-lora", "student": str(tiny_model_dir), "data": "traces", "steps": 3,
                  "batch_size": 2, "seq_len": 1536, "warmup_steps": 1, "lora": {"r": 4, "alpha": 8}}},
        {"merge": {"name": "merged"}},
        {"eval": {"models": ["teacher", "merged"], "max_tokens": 256, "seq_len": 32, "speed": False,
                  "samples": False, "tool_tasks": "auto", "tool_suite": 4, "tool_max_turns": 3,
                  "tool_max_tokens": 24}},
    ]}
    p = tmp_path / "tools.yaml"
    p.write_text(yaml.safe_dump(raw))
    run = tmp_path / "run"
    run_recipe(load_recipe(p), run)
    manifest = json.loads((run / "manifest.json").read_text())
    ev = next(st for st in manifest["stages"] if st["kind"] == "eval")["metrics"]
    tools = ev["tools"]
    assert list(tools) == ["teacher", "merged"]
    assert tools["teacher"]["model"] == endpoint  # the model that wrote the traces, not the recipe's local teacher
    assert tools["teacher"]["tasks"] == 5 and tools["teacher"]["tool_use_pct"] == 100.0
    assert tools["teacher"]["peak_rss_mb"] is None and tools["merged"]["peak_rss_mb"] > 0
    # the suite was made from the codebase and shares no id with the training traces
    suite = [json.loads(x)["id"] for x in (run / "03-eval" / "tool_tasks.jsonl").read_text().splitlines()]
    traces = [json.loads(x)["id"] for x in (run / "00-traces" / "data.jsonl").read_text().splitlines()]
    assert suite and traces and not set(suite) & set(traces)
    report = (run / "report.md").read_text()
    assert "## Tool use" in report and "| merged | 5 |" in report
    assert "<h2>Tool use</h2>" in (run / "report.html").read_text()
