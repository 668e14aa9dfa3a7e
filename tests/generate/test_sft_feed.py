"""Traces feed the distillation teammate's SFT: assistant turns (tool calls included) are the only labels."""

from __future__ import annotations

from downsize.distill.losses import IGNORE_INDEX
from downsize.distill.supervised import assistant_labels
from downsize.generate import GenerateConfig, GenParams, generate
from downsize.generate.writer import read_jsonl


def test_trace_labels_cover_tool_calls_and_answer_only(teacher_server, tmp_path, codebase, tiny_tokenizer):
    cfg = GenerateConfig(teacher=f"openai:{teacher_server.url}#t", out=str(tmp_path / "t.jsonl"), codebase=str(codebase),
                         n_codebase=3, n_negative=0, templates=("class_location",), params=GenParams(max_retries=1))
    generate(cfg)
    recs = read_jsonl(cfg.out)
    assert len(recs) == 3
    for r in recs:
        ids, labels = assistant_labels(tiny_tokenizer, r["messages"], r["tools"])
        target = tiny_tokenizer.decode([i for i, y in zip(ids, labels) if y != IGNORE_INDEX])
        assert '<tool_call>{"name": "grep"' in target and "Here is what I found" in target
        assert "You are a coding assistant" not in target and r["messages"][1]["content"] not in target
        full = tiny_tokenizer.decode(ids)
        tool_result = r["messages"][3]["content"]  # context, not a target: the answer quotes it once, the tool turn is masked
        assert full.count(tool_result) == 2 and target.count(tool_result) == 1 and "<|im_start|>tool" not in target
