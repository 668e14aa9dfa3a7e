"""`downsize distill` end to end through the CLI: write a teacher cache, train from it, clear errors."""

import json
import subprocess
import sys

import pytest


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "downsize.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=120)


@pytest.mark.slow  # 20 s; test_distill.py::test_offline_cache_matches_teacher_and_trains_without_it does the same in-process
def test_cli_cache_then_offline_distill(tiny_model_dir, text_data, tmp_path):
    r = run_cli("distill", "--teacher", tiny_model_dir, "--data", text_data, "--write-cache", tmp_path / "cache",
                "--top-k", 8, "--seq-len", 32, "--windows", 8, "--teacher-dtype", "fp32")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "bytes/token" in r.stdout
    r = run_cli("distill", "--teacher", tiny_model_dir, "--student", "teacher:num_hidden_layers=1,hidden_size=32",
                "--data", text_data, "--cache", tmp_path / "cache", "--out", tmp_path / "s", "--steps", 3,
                "--batch-size", 2, "--warmup", 1, "--loss", "srkl", "--kd-ratio", 0.8)
    assert r.returncode == 0, r.stderr[-2000:]
    card = json.loads((tmp_path / "s" / "distill_card.json").read_text())
    assert card["steps"] == 3 and card["loss"]["name"] == "srkl" and card["loss"]["kd_ratio"] == 0.8
    assert card["student"].startswith("teacher config with num_hidden_layers=1")


def test_cli_errors_are_clear(tiny_model_dir, text_data, tmp_path):
    r = run_cli("distill", "--teacher", tiny_model_dir, "--student", "teacher:num_hidden_layers=1", "--data", text_data,
                "--out", tmp_path / "x", "--loss", "kl")
    assert r.returncode == 2 and "'fkl'" in r.stderr and "'jsd'" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("distill", "--student", tiny_model_dir, "--out", tmp_path / "y", "--cache", tmp_path / "nocache")
    assert r.returncode == 2 and "--write-cache" in r.stderr


@pytest.mark.slow  # 19 s; test_distill.py::test_sft_full_and_lora trains SFT with and without LoRA in-process
def test_cli_sft_lora_on_chat_jsonl(tiny_model_dir, tmp_path):
    chats = tmp_path / "chats.jsonl"
    chats.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"What is {i} + 1?"},
                                                      {"role": "assistant", "content": f"{i + 1}"}]}) + "\n"
                             for i in range(8)))
    r = run_cli("sft", "--model", tiny_model_dir, "--data", chats, "--out", tmp_path / "s", "--steps", 3,
                "--batch-size", 2, "--warmup", 1, "--lora-r", 4, "--max-seq-len", 128)
    assert r.returncode == 0, r.stderr[-2000:]
    card = json.loads((tmp_path / "s" / "distill_card.json").read_text())
    assert card["stage"] == "sft" and card["examples"] == 8 and card["steps"] == 3 and card["lora"]["r"] == 4
    assert (tmp_path / "s" / "model.safetensors").exists() and not (tmp_path / "s" / "adapter_config.json").exists()
    r = run_cli("sft", "--model", tiny_model_dir, "--data", chats, "--out", tmp_path / "k", "--logprob-kd", 0.5)
    assert r.returncode == 2 and "--top-logprobs" in r.stderr and "Traceback" not in r.stderr
