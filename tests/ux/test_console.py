"""Human units, quiet third-party output by default (--verbose to see it), and --version."""

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import downsize
from downsize.console import (fmt_bytes, fmt_duration, fmt_params, fmt_pct_change, fmt_rate, fmt_ratio,
                              fmt_sig)

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("n,text", [(0, "0 B"), (512, "512 B"), (5252576, "5.0 MiB"), (1536, "1.5 KiB"),
                                    (30.02 * 2**20, "30.0 MiB"), (7.5 * 2**30, "7.5 GiB"), (None, "–")])
def test_fmt_bytes(n, text):
    assert fmt_bytes(n) == text


@pytest.mark.parametrize("x,text", [(1449.0322, "1,449 tok/s"), (14.49, "14.5 tok/s"), (1.4491, "1.45 tok/s"),
                                    (0.012345, "0.0123 tok/s"), (123456.7, "123,457 tok/s")])
def test_fmt_rate(x, text):
    assert fmt_rate(x) == text


@pytest.mark.parametrize("s,text", [(0.423, "0.42 s"), (0.1, "0.1 s"), (2.0, "2 s"), (45.2, "45 s"), (200, "3 min 20 s"), (180, "3 min"),
                                    (7500, "2 h 05 min")])
def test_fmt_duration(s, text):
    assert fmt_duration(s) == text


def test_params_ratios_and_changes():
    assert (fmt_params(15_700_000), fmt_params(1_540_000_000), fmt_params(4200), fmt_params(12)) == \
        ("15.7M", "1.54B", "4.2k", "12")
    assert fmt_ratio(15.0, 30.0, smaller_is_better=True) == "×2.0 smaller"
    assert fmt_ratio(60.0, 30.0, smaller_is_better=True) == "×2.0 larger"
    assert fmt_ratio(3000.0, 1000.0, smaller_is_better=False) == "×3.0 faster"
    assert fmt_ratio(500.0, 1000.0, smaller_is_better=False) == "×2.0 slower"
    assert fmt_ratio(1.0, 1.0, smaller_is_better=False) == "same"
    assert fmt_ratio(None, 1.0, smaller_is_better=False) == "–"
    assert fmt_pct_change(12.6, 12.0) == "+5.0 %" and fmt_pct_change(11.4, 12.0) == "-5.0 %"
    assert fmt_sig(0.0) == "0"


def _cli(*args, cwd):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    for k in ("TRANSFORMERS_VERBOSITY", "HF_HUB_DISABLE_PROGRESS_BARS", "TRANSFORMERS_NO_ADVISORY_WARNINGS"):
        env.pop(k, None)
    return subprocess.run([sys.executable, "-m", "downsize.cli", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=300)


def test_version_matches_the_package_metadata(tmp_path):
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    r = _cli("--version", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"downsize {version}" == f"downsize {downsize.__version__}"


@pytest.mark.slow  # over 10 s: the default suite must stay under 10 minutes
def test_third_party_output_is_quiet_unless_verbose(tmp_path, tiny_model_dir, stdlib_texts):
    """transformers draws a 'Loading weights' bar and warns 'Token indices sequence length…' when eval loads a model
    and tokenizes a long document, gguf logs 'Writing the following files' when export writes one; none of them
    reaches the terminal by default, all do with --verbose."""
    both = lambda r: r.stdout + r.stderr  # noqa: E731
    runs = {}
    for mode, flags in (("quiet", []), ("loud", ["--verbose"])):
        # one data file per run: token streams are cached on disk, and a cached stream is not tokenized again
        data = tmp_path / f"d-{mode}.txt"
        data.write_text("\n".join(stdlib_texts[:3])[:15000])  # > the tokenizer's 2048 tokens: "Token indices sequence…"
        ev = _cli(*flags, "eval", str(tiny_model_dir), "--data", str(data), "--seq-len", "32", "--max-tokens", "256",
                  "--no-sample", cwd=tmp_path)
        ex = _cli(*flags, "export", "gguf", str(tiny_model_dir), "--out", f"{mode}.gguf", "--quant", "F32", cwd=tmp_path)
        assert ev.returncode == 0 and ex.returncode == 0, ev.stderr + ex.stderr
        runs[mode] = both(ev) + both(ex)
    for noise in ("Loading weights", "Writing the following files", "Token indices sequence length"):
        assert noise in runs["loud"] and noise not in runs["quiet"], noise
    assert "perplexity" in runs["quiet"]  # downsize's own output is still there
    assert (tmp_path / "quiet.gguf").stat().st_size == (tmp_path / "loud.gguf").stat().st_size > 0

def test_quiet_holds_when_the_root_logger_is_at_info(tmp_path, tiny_model_dir):
    """`downsize run` and `distill` configure logging at INFO for downsize's own messages; gguf's INFO lines
    must still not come through."""
    import io
    import logging

    from downsize.console import quiet_third_party
    from downsize.export.gguf import export_gguf

    root = logging.getLogger()
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        quiet_third_party(verbose=False)
        export_gguf(tiny_model_dir, tmp_path / "q.gguf", "F32")
        assert "Writing the following files" not in buf.getvalue()
        quiet_third_party(verbose=True)
        export_gguf(tiny_model_dir, tmp_path / "v.gguf", "F32")
        assert "Writing the following files" in buf.getvalue()
    finally:
        quiet_third_party(verbose=False)
        root.removeHandler(handler)
        root.setLevel(old_level)
