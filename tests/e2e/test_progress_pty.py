"""`downsize run` in a pseudo-terminal shows live progress for every stage and one summary line after each.

The recipe (prune → distill → sft → quantize → export → eval on a tiny random-init model) runs as a user
runs it, `python -m downsize.cli run`, with a pty as its stdin, stdout and stderr, so stderr is a terminal
and the progress bars are drawn; every byte the terminal received is captured. Each stage must draw at
least one tqdm line ("desc: ...| n/total [elapsed<eta, rate]") between its "running" line and its
"done in" summary. The same run with pipes instead of a terminal (a CI log) draws no bar at all.
"""

import fcntl
import json
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
# a tqdm line: "description: 42%|####  | 107/256 [00:01<00:02, 98.1tok/s]" (rate "?" before the first update)
BAR = re.compile(r"(?P<desc>[^\r\n]*?): +\d+%\|[^|]*\| *(?P<n>[\d.]+k?)/(?P<total>[\d.]+k?) \[[\d:]+<[\d:?]+, *[^\]]*\]")
STAGE_LINE = re.compile(r"\[(?P<i>\d+)\] (?P<name>[\w-]+): (?P<what>running \w+|done in [^\r\n]*)")
STAGES = ["pruned", "distilled", "tuned", "q8", "ollama", "eval"]


@pytest.fixture()
def recipe(tmp_path, tiny_model_dir, stdlib_texts):
    data = tmp_path / "data.txt"
    data.write_text("\n".join(stdlib_texts[:4])[:20000])
    chats = tmp_path / "chats.jsonl"
    chats.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"what is {i} + {i}?"},
                                                      {"role": "assistant", "content": f"{2 * i}"}]}) + "\n"
                             for i in range(8)))
    raw = {"name": "tiny-progress", "teacher": str(tiny_model_dir), "data": str(data), "stages": [
        {"prune": {"name": "pruned", "method": "wanda", "sparsity": 0.5, "calib_samples": 4, "seq_len": 32,
                   "batch_size": 2}},
        {"distill": {"name": "distilled", "loss": "jsd", "steps": 3, "batch_size": 2, "seq_len": 32, "warmup_steps": 1}},
        {"sft": {"name": "tuned", "data": str(chats), "steps": 2, "batch_size": 2, "seq_len": 64, "warmup_steps": 1}},
        {"quantize": {"name": "q8", "quant": "Q8_0"}},
        {"export": {"name": "ollama", "model_name": "tiny-kd", "quant": "Q4_K_M", "calib_tokens": 256,
                    "create": False}},
        {"eval": {"max_tokens": 256, "seq_len": 32, "speed": False, "samples": True}},
    ]}
    p = tmp_path / "r.yaml"
    p.write_text(yaml.safe_dump(raw))
    return p


def _env(**extra):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1", "TERM": "xterm-256color",
           **extra}
    env.pop("DOWNSIZE_PROGRESS", None)
    return env


def run_in_pty(args: list[str], cwd: Path, timeout: float = 300) -> tuple[int, str]:
    """Run ``args`` with a pseudo-terminal as stdin/stdout/stderr; returns (exit code, everything it wrote)."""
    leader, follower = pty.openpty()
    # a terminal of 160 x 50 (a fresh pty is 0 x 0, where tqdm would draw bars of no width)
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 160, 0, 0))
    proc = subprocess.Popen(args, stdin=follower, stdout=follower, stderr=follower, cwd=cwd, env=_env(),
                            close_fds=True)
    os.close(follower)
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.5)
            if ready:
                try:
                    data = os.read(leader, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
        else:
            proc.kill()
            pytest.fail("the run did not finish in time:\n" + b"".join(chunks).decode(errors="replace")[-3000:])
    finally:
        os.close(leader)
    return proc.wait(timeout=30), b"".join(chunks).decode("utf-8", errors="replace")


def _screen_lines(raw: str) -> list[str]:
    """What each carriage return or newline left behind: every state of every bar, in order."""
    return [x for x in re.split(r"[\r\n]+", ANSI.sub("", raw)) if x.strip()]


def test_recipe_in_a_terminal_shows_progress_for_every_stage(recipe, tmp_path):
    cmd = [sys.executable, "-m", "downsize.cli", "run", str(recipe), "--out", str(tmp_path / "run")]
    rc, raw = run_in_pty(cmd, tmp_path)
    lines = _screen_lines(raw)
    (tmp_path / "screen.txt").write_text("\n".join(lines))
    assert rc == 0, "\n".join(lines[-40:])
    # per stage: the bars drawn between its "running" line and its summary
    spans: dict[str, dict] = {}
    current = None
    for line in lines:
        m = STAGE_LINE.search(line)
        if m:
            name = m["name"]
            if m["what"].startswith("running"):
                current = name
                spans[name] = {"bars": set(), "summary": None}
            else:
                assert name == current, f"summary of {name} while {current} ran"
                spans[name]["summary"] = m["what"]
                current = None
            continue
        b = BAR.search(line)
        if b and current:
            spans[current]["bars"].add(b["desc"].strip())
    assert list(spans) == STAGES, "\n".join(lines)
    for name, s in spans.items():
        assert s["bars"], f"stage {name} drew no progress line:\n" + "\n".join(lines)
        assert s["summary"] and s["summary"].startswith("done in "), (name, s)
    # the long steps each stage is made of
    bars = {n: " | ".join(sorted(s["bars"])) for n, s in spans.items()}
    assert "wanda" in bars["pruned"] and "calibration" in bars["pruned"]
    assert "training" in bars["distilled"] and "training" in bars["tuned"]
    assert "quantizing tensors" in bars["ollama"] and "importance matrix" in bars["ollama"]
    assert "converting tensors" in bars["q8"]
    assert "perplexity, KL, top-1" in bars["eval"] and "sample completions" in bars["eval"]
    # the training bars carry loss and tok/s; the summary lines carry the headline numbers
    assert any("loss=" in x and "tok_s=" in x for x in lines)
    assert "params" in spans["pruned"]["summary"] and "bits/weight" in spans["q8"]["summary"]
    assert "4 models:" in spans["eval"]["summary"] or "models:" in spans["eval"]["summary"]


@pytest.mark.slow  # over 10 s; the default suite must stay under 10 minutes
def test_no_bars_when_the_output_is_not_a_terminal(recipe, tmp_path):
    """Pipes (CI logs, pytest's capture): the stage lines and summaries, no bar and no carriage return."""
    raw = yaml.safe_load(recipe.read_text())
    raw["stages"] = raw["stages"][:1] + raw["stages"][-1:]  # prune and eval are enough to see the rule
    recipe.write_text(yaml.safe_dump(raw))
    r = subprocess.run([sys.executable, "-m", "downsize.cli", "run", str(recipe), "--out", str(tmp_path / "run")],
                       check=False, capture_output=True, text=True, cwd=tmp_path, env=_env(), timeout=300)
    assert r.returncode == 0, r.stderr
    out = r.stdout + r.stderr
    assert "\r" not in out and not BAR.search(out), out
    assert re.search(r"\[0\] pruned: done in .*params", out) and re.search(r"\[1\] eval: done in ", out), out
