"""kill -9 at a random point of ``distill``, ``generate`` and ``run``, then the same command again: the
result equals an uninterrupted run (weights bit for bit; every JSONL record once, none lost).

    python -m pytest -q tests/reliability/test_resume.py --runslow

Each killed run is a real ``python -m downsize.cli`` process ended with SIGKILL while it works (after
its first checkpoint or its first records), so nothing of it gets to clean up.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from catalogue import build_env

SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    return build_env(tmp_path_factory.mktemp("resume_env"))


def _cli(argv, cwd):
    e = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-m", "downsize.cli", *argv], cwd=cwd, env=e, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def _run(argv, cwd, timeout=300) -> None:
    p = _cli(argv, cwd)
    _, err = p.communicate(timeout=timeout)
    assert p.returncode == 0, err[-3000:]


def _kill_when(argv, cwd, ready, timeout=300) -> bool:
    """Start the command, SIGKILL it once ``ready()`` (plus a random few ms); False if it finished first."""
    p = _cli(argv, cwd)
    t0 = time.monotonic()
    while p.poll() is None and time.monotonic() - t0 < timeout:
        if ready():
            time.sleep(random.Random(len(argv)).uniform(0, 0.05))
            p.send_signal(signal.SIGKILL)
            p.wait()
            return True
        time.sleep(0.01)
    p.communicate()
    return False


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _latest_step(work: Path) -> int:
    try:
        return json.loads((work / "checkpoints" / "latest.json").read_text())["step"]
    except (OSError, ValueError, KeyError):
        return 0


def _steps(metrics: Path) -> list[int]:
    return [json.loads(line)["step"] for line in metrics.read_text().splitlines() if line.strip()]


@pytest.mark.slow
def test_distill_killed_then_resumed_equals_uninterrupted(env, tmp_path):
    base = ["distill", "--teacher", str(env.model), "--student", "teacher:num_hidden_layers=1", "--data", str(env.text),
            "--steps", "24", "--checkpoint-every", "3", "--batch-size", "2", "--seq-len", "32", "--warmup", "2",
            "--mixed-precision", "no", "--teacher-dtype", "fp32"]
    _run([*base, "--out", str(tmp_path / "ref")], tmp_path)
    out = tmp_path / "killed"
    work = out.with_name(out.name + ".work")
    assert _kill_when([*base, "--out", str(out)], tmp_path, lambda: 3 <= _latest_step(work) < 18), "finished before the kill"
    assert not out.exists()  # nothing half-written where the result goes
    refused = _cli([*base, "--out", str(out)], tmp_path)  # without --resume the checkpoint is not thrown away
    _, err = refused.communicate(timeout=300)
    assert refused.returncode == 2 and "--resume" in err and "Traceback" not in err
    _run([*base, "--out", str(out), "--resume"], tmp_path)
    assert _sha(out / "model.safetensors") == _sha(tmp_path / "ref" / "model.safetensors")
    assert _steps(work / "metrics.jsonl") == _steps(tmp_path / "ref.work" / "metrics.jsonl")


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.exists() else []


@pytest.mark.slow
def test_generate_killed_three_times_loses_and_doubles_nothing(env, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("".join(f"question number {i}: what is {i} plus {i}?\n" for i in range(16)))
    base = ["generate", "--teacher", str(env.model), "--prompts", str(prompts), "--in-flight", "2", "--max-tokens", "6",
            "--n-negative", "0"]
    ref = tmp_path / "ref.jsonl"
    _run([*base, "--out", str(ref)], tmp_path)
    out = tmp_path / "out.jsonl"
    rej = tmp_path / "out.rejected.jsonl"
    kills = 0
    for target in (3, 7, 11):
        kills += _kill_when([*base, "--out", str(out)], tmp_path,
                            lambda t=target: len(_lines(out)) + len(_lines(rej)) >= t)
    _run([*base, "--out", str(out)], tmp_path)
    assert kills >= 2
    got = _lines(out) + _lines(rej)
    want = _lines(ref) + _lines(tmp_path / "ref.rejected.jsonl")
    assert len(got) == len({r["id"] for r in got}) == 16  # none doubled, none lost
    strip = lambda r: (r["id"], json.dumps(r["messages"], sort_keys=True))  # noqa: E731 - timings differ, text must not
    assert sorted(map(strip, got)) == sorted(map(strip, want))


@pytest.mark.slow
def test_run_killed_inside_a_stage_then_rerun_equals_uninterrupted(env, tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"name": "resume", "teacher": str(env.model), "data": str(env.text), "seed": 0,
                                      "stages": [{"train": {"name": "trained", "steps": 30, "batch_size": 2, "seq_len": 32,
                                                            "checkpoint_every": 3, "warmup_steps": 2,
                                                            "mixed_precision": "no"}}]}))
    _run(["run", str(recipe), "--out", str(tmp_path / "ref")], tmp_path)
    run = tmp_path / "killed"

    def ready():
        found = list(run.glob("*/output.work"))
        return bool(found) and 3 <= _latest_step(found[0]) < 24

    assert _kill_when(["run", str(recipe), "--out", str(run)], tmp_path, ready), "finished before the kill"
    _run(["run", str(recipe), "--out", str(run)], tmp_path)
    (ref_w,) = (tmp_path / "ref").glob("*/output/model.safetensors")
    (got_w,) = run.glob("*/output/model.safetensors")
    assert _sha(got_w) == _sha(ref_w)
    (ref_m,) = (tmp_path / "ref").glob("*/output.work/metrics.jsonl")
    (got_m,) = run.glob("*/output.work/metrics.jsonl")
    assert _steps(got_m) == _steps(ref_m)
