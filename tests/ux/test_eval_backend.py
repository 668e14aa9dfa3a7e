"""`downsize eval GGUF --teacher HF --speed` says which runtime measured each column, in human units."""

import pytest
import os
import subprocess
import sys
from pathlib import Path

from downsize.export.gguf import export_gguf

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow  # over 10 s: the default suite must stay under 10 minutes
def test_eval_speed_rows_name_the_backend_of_each_column(tmp_path, tiny_model_dir, stdlib_texts):
    gguf = tmp_path / "student.gguf"
    export_gguf(tiny_model_dir, gguf, "F32")
    data = tmp_path / "d.txt"
    data.write_text(stdlib_texts[0][:4000])
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    r = subprocess.run([sys.executable, "-m", "downsize.cli", "eval", str(gguf), "--teacher", str(tiny_model_dir),
                        "--data", str(data), "--seq-len", "32", "--max-tokens", "256", "--speed"],
                       capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert r.returncode == 0, r.stderr
    lines = {ln.split("│")[1].strip(): [c.strip() for c in ln.split("│")[2:-1]]
             for ln in r.stdout.splitlines() if ln.count("│") >= 4}
    assert lines["backend"] == ["llama.cpp", "transformers"]
    assert lines["speed measured in"] == ["llama.cpp", "transformers"]
    assert all(c.endswith("KiB") for c in lines["size on disk"])  # 5.0 MiB, not 5252576 bytes or 30.0200 MB
    assert all(c.endswith("MiB") for c in lines["peak RSS"])
    for row in ("speed measured in", "prompt tokens/s", "generation tokens/s", "peak RSS", "backend", "perplexity"):
        assert all(c and c != "–" for c in lines[row]), (row, lines[row])
