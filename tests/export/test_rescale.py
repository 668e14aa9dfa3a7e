"""Row rescaling of llama.cpp's quantized blocks (downsize.export.rescale), checked on real llama.cpp output."""

from __future__ import annotations

import shutil

import gguf
import numpy as np
import pytest
from gguf.quants import dequantize

from downsize.errors import DownsizeError
from downsize.export.gguf import export_gguf
from downsize.export.quantize import quantize_gguf
from downsize.export.rescale import SCALE_FIELDS, rescale_rows, row_alpha
from downsize.export.verify import MIXED_TEXT, compare_with_hf

# One llama.cpp file type per block layout in SCALE_FIELDS that llama.cpp's quantizer produces without an imatrix.
FILE_TYPES = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K_S", "Q4_K_S", "Q5_K_S", "Q6_K", "IQ4_NL", "IQ4_XS",
              "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ3_XXS", "IQ3_S"]


@pytest.fixture(scope="module")
def f16_gguf(kquant_model_dir, tmp_path_factory):
    return export_gguf(kquant_model_dir, tmp_path_factory.mktemp("rs") / "f16.gguf", "F16").path


def _rows(t) -> np.ndarray:
    return dequantize(np.asarray(t.data), t.tensor_type).reshape(-1, int(t.shape[0])).astype(np.float64)


def _naive_alpha(w_row, q_row) -> float:
    num = sum(float(a) * float(a) for a in w_row)
    den = sum(float(a) * float(b) for a, b in zip(w_row, q_row))
    return num / den


def test_row_alpha_matches_a_naive_loop():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(5, 64))
    q = w * rng.uniform(0.9, 1.1, size=(5, 1)) + 0.01 * rng.normal(size=(5, 64))
    a = row_alpha(w, q)
    assert np.allclose(a, [_naive_alpha(w[i], q[i]) for i in range(5)], rtol=1e-12)
    q[2] = -w[2]  # pointing away: no α
    q[3] = w[3] * 0.5  # α = 2, outside the accepted range
    a = row_alpha(w, q)
    assert np.isnan(a[2]) and np.isnan(a[3]) and np.isfinite(a[[0, 1, 4]]).all()


@pytest.mark.parametrize("ftype", FILE_TYPES)
def test_rescale_scales_each_row_by_alpha_and_keeps_the_codes(f16_gguf, tmp_path, ftype):
    plain = tmp_path / "plain.gguf"
    # The IQ2/IQ3 types need an importance matrix; a flat one (all columns equal) is enough here.
    flat = {t.name: np.ones(int(t.shape[0]), np.float32) for t in gguf.GGUFReader(f16_gguf).tensors if len(t.shape) == 2}
    r = quantize_gguf(f16_gguf, plain, ftype, rescale=False, imatrix=flat if ftype.startswith(("IQ2", "IQ3")) else None)
    assert r["rescale"] is None
    fixed = tmp_path / "fixed.gguf"
    shutil.copy(plain, fixed)
    stats = rescale_rows(f16_gguf, fixed)
    ref = {t.name: t for t in gguf.GGUFReader(f16_gguf).tensors}
    before = {t.name: t for t in gguf.GGUFReader(plain).tensors}
    seen, zero_rows = set(), 0
    for t in gguf.GGUFReader(fixed).tensors:
        b = before[t.name]
        if t.tensor_type not in SCALE_FIELDS:
            assert bytes(t.data) == bytes(b.data), t.name  # float tensors (norms) untouched
            continue
        seen.add(t.tensor_type.name)
        w, q0, q1 = _rows(ref[t.name]), _rows(b), _rows(t)
        for i in np.argsort(-np.abs(w).max(1))[:3]:  # large rows: normal (not subnormal) fp16 block scales
            alpha = _naive_alpha(w[i], q0[i])
            assert np.allclose(q1[i], alpha * q0[i], rtol=0, atol=2e-3 * np.abs(q0[i]).max()), (t.name, i)
        # Unbiased along the original row, up to the fp16 rounding of the new scales (coarse where they are
        # subnormal, as in this random-init model's smallest rows); never further off than before.
        nz = np.abs(w).sum(1) > 0  # the pad token's embedding row is zero: nothing to correct
        zero_rows += int((~nz).sum())
        assert (q1[~nz] == q0[~nz]).all()
        w, q0, q1 = w[nz], q0[nz], q1[nz]
        proj0 = np.einsum("ij,ij->i", w, q0) / np.einsum("ij,ij->i", w, w)
        proj = np.einsum("ij,ij->i", w, q1) / np.einsum("ij,ij->i", w, w)
        err0, err = np.abs(proj0 - 1), np.abs(proj - 1)
        assert err.mean() <= 0.5 * err0.mean() + 5e-4 and (err <= err0 + 1e-3).all(), t.name
        # Only the fp16 scale fields changed: every other byte of every block is llama.cpp's.
        _, block_bytes = gguf.GGML_QUANT_SIZES[t.tensor_type]
        mask = np.ones(block_bytes, bool)
        for o in SCALE_FIELDS[t.tensor_type]:
            mask[o:o + 2] = False
        a_blocks = np.asarray(t.data).reshape(-1, block_bytes)
        b_blocks = np.asarray(b.data).reshape(-1, block_bytes)
        assert (a_blocks[:, mask] == b_blocks[:, mask]).all(), t.name
    assert stats.tensors == sum(1 for t in gguf.GGUFReader(fixed).tensors if t.tensor_type in SCALE_FIELDS)
    assert stats.rows_skipped == zero_rows and 0.9 < stats.alpha_min <= stats.alpha_max < 1.1
    assert seen, ftype
    assert plain.stat().st_size == fixed.stat().st_size


def test_quantize_rescales_by_default_and_llama_cpp_runs_it(kquant_model_dir, f16_gguf, tmp_path):
    plain, default = tmp_path / "plain.gguf", tmp_path / "default.gguf"
    quantize_gguf(f16_gguf, plain, "Q2_K", rescale=False)
    r = quantize_gguf(f16_gguf, default, "Q2_K")
    assert r["rescale"]["tensors"] > 0 and r["rescale"]["alpha_mean"] != 1.0
    manual = tmp_path / "manual.gguf"
    shutil.copy(plain, manual)
    rescale_rows(f16_gguf, manual)
    assert manual.read_bytes() == default.read_bytes()
    c = compare_with_hf(default, kquant_model_dir, [MIXED_TEXT])
    assert c["tokens_equal"] and c["kl"] < 0.2, c
    assert not list(tmp_path.glob(".*tmp*"))


def test_rescale_refuses_a_mismatched_reference(kquant_model_dir, f16_gguf, tmp_path):
    q = tmp_path / "q.gguf"
    quantize_gguf(f16_gguf, q, "Q4_K_S", rescale=False)
    original = q.read_bytes()
    with pytest.raises(DownsizeError, match="not a float type"):
        rescale_rows(q, q)
    q8 = export_gguf(kquant_model_dir, tmp_path / "q8.gguf", "Q8_0").path
    with pytest.raises(DownsizeError, match="not a float type"):
        rescale_rows(q8, q)
    other = tmp_path / "other.gguf"  # a float GGUF with one of the same tensor names at another shape
    w = gguf.GGUFWriter(other, "llama")
    w.add_tensor("blk.1.ffn_down.weight", np.ones((4, 8), np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(DownsizeError, match="shape"):
        rescale_rows(other, q)
    with pytest.raises(DownsizeError, match="cannot read"):
        rescale_rows(tmp_path / "missing.gguf", q)
    assert q.read_bytes() == original  # checked before writing: a refused reference changes nothing


def test_cli_no_rescale_keeps_llama_cpp_bytes(f16_gguf, tmp_path):
    import json

    from typer.testing import CliRunner

    from downsize.cli import app

    plain = tmp_path / "plain.gguf"
    quantize_gguf(f16_gguf, plain, "Q3_K_S", rescale=False)
    out = tmp_path / "cli.gguf"
    r = CliRunner().invoke(app, ["quantize", str(f16_gguf), "--out", str(out), "--quant", "Q3_K_S", "--no-rescale",
                                 "--json"])
    assert r.exit_code == 0, r.output
    assert out.read_bytes() == plain.read_bytes()
    r = CliRunner().invoke(app, ["quantize", str(f16_gguf), "--out", str(out), "--quant", "Q3_K_S", "--json"])
    assert r.exit_code == 0, r.output
    info = json.loads(r.output[r.output.index("{"):])
    assert info["rescale"]["tensors"] > 0 and out.read_bytes() != plain.read_bytes()


def test_paired_nll_delta_matches_a_naive_bootstrap():
    from downsize.export.report import paired_nll_delta

    rng = np.random.default_rng(3)
    a = {"tokens": 600, "window_nll": list(rng.uniform(50, 60, size=6))}
    b = {"tokens": 600, "window_nll": [x + 0.5 for x in a["window_nll"]]}
    d, lo, hi = paired_nll_delta(a, b)
    assert d == pytest.approx(3.0 / 600) and lo == pytest.approx(d) and hi == pytest.approx(d)  # constant shift
    b["window_nll"][0] += 6.0
    d, lo, hi = paired_nll_delta(a, b)
    gen = np.random.default_rng(0)
    diffs = [y - x for x, y in zip(a["window_nll"], b["window_nll"])]
    boot = sorted(sum(diffs[j] for j in gen.integers(0, 6, 6)) / 600 for _ in range(2000))
    assert d == pytest.approx(9.0 / 600)
    assert lo == pytest.approx(np.percentile(boot, 2.5)) and hi == pytest.approx(np.percentile(boot, 97.5))
    assert lo < d < hi
