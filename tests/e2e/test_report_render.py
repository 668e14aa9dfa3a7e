"""The run report opens in headless Chromium and renders its table and plots."""

import shutil
import struct
import subprocess

import pytest
import yaml

from downsize.pipeline import run_recipe
from downsize.recipe import load_recipe

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (apt-get install chromium)")
def test_report_renders_in_chromium(tmp_path, tiny_model_dir, stdlib_texts):
    data = tmp_path / "data.txt"
    data.write_text("\n".join(stdlib_texts[:3])[:15000])
    p = tmp_path / "r.yaml"
    p.write_text(yaml.safe_dump({"name": "render", "teacher": str(tiny_model_dir), "data": str(data), "stages": [
        {"train": {"name": "ce", "steps": 4, "batch_size": 2, "seq_len": 32, "warmup_steps": 1, "checkpoint_every": 0}},
        {"eval": {"max_tokens": 256, "seq_len": 32, "speed": False}}]}))
    run = tmp_path / "run"
    run_recipe(load_recipe(p), run, log=lambda s: None)
    url = (run / "report.html").as_uri()
    profile = tmp_path / "profile"
    dom = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--dump-dom", url],
                         capture_output=True, text=True, timeout=120).stdout
    assert "<table>" in dom and dom.count("<svg") == 2 and "<polyline" in dom and "<circle" in dom
    png = tmp_path / "report.png"
    subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", f"--screenshot={png}", "--window-size=1200,1600", url],
                   capture_output=True, timeout=120)
    head = png.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", head[16:24])
    assert (width, height) == (1200, 1600)
    # not a blank page: the PNG of a rendered table and plots compresses far worse than an empty one
    assert png.stat().st_size > 20_000
