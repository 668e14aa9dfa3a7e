"""Row-scale correction for a quantized GGUF: undo the shrinkage of llama.cpp's least-squares block fits.

llama.cpp's quantizers choose each block's scale (and min) to minimise the squared error of that block,
weighted by the importance matrix when one is given. A least-squares fit under rounding noise shrinks:
the quantized row ``q`` ends up shorter along the original row ``w`` (⟨w, q⟩ < ⟨w, w⟩). On zoo:coder-teacher-qwen
rows shrink by 0.2 % on average at Q4_K_M and 1.1 % at Q2_K (2.7 % with an importance matrix, whose fits shrink
more), and the model loses more to a 1 % uniform shrinkage of its weights than to Q4_K_M's rounding noise —
which is why an importance matrix, although it lowers the weighted rounding error, raised its perplexity loss.

The correction multiplies every block scale of row ``i`` by ``α_i = ⟨w_i, w_i⟩ / ⟨w_i, q_i⟩`` so that the
quantized row is unbiased along the original. Every block type here dequantizes as
``d·(…) − dmin·(…)`` (or ``d·(…) + m``), linear in its fp16 scale fields, so scaling those fields by α scales
the dequantized row by α exactly (up to fp16 rounding of the new scale): the quantized codes, the file
layout and its size do not change, and llama.cpp loads the file as before.

    >>> from downsize.export.gguf import export_gguf
    >>> _ = export_gguf("zoo:coder-teacher-qwen", "model-f32.gguf", quant="F32")
    >>> _ = export_gguf("zoo:coder-teacher-qwen", "model-q4_k_m.gguf", quant="Q4_K_M", rescale=False)
    >>> stats = rescale_rows("model-f32.gguf", "model-q4_k_m.gguf")   # patches the second file in place
    >>> stats.tensors > 0, 0.9 < stats.alpha_mean < 1.1
    (True, True)

``quantize_gguf`` applies it to its temporary output before the atomic rename (``rescale=False`` keeps
llama.cpp's bytes exactly).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import gguf
import numpy as np
from gguf.quants import dequantize

from downsize.errors import DownsizeError

Q = gguf.GGMLQuantizationType
# Byte offsets of the fp16 scale fields inside one block (ggml-common.h). Types absent here are left alone.
SCALE_FIELDS: dict[Q, tuple[int, ...]] = {
    Q.Q4_0: (0,), Q.Q4_1: (0, 2), Q.Q5_0: (0,), Q.Q5_1: (0, 2), Q.Q8_0: (0,),
    Q.Q2_K: (80, 82),  # scales[16], qs[64], d, dmin
    Q.Q3_K: (108,),  # hmask[32], qs[64], scales[12], d
    Q.Q4_K: (0, 2), Q.Q5_K: (0, 2),  # d, dmin first
    Q.Q6_K: (208,),  # ql[128], qh[64], scales[16], d
    Q.IQ4_NL: (0,), Q.IQ4_XS: (0,), Q.IQ2_XXS: (0,), Q.IQ2_XS: (0,), Q.IQ2_S: (0,), Q.IQ3_XXS: (0,), Q.IQ3_S: (0,),
}
FLOAT_TYPES = {Q.F32, Q.F16, Q.BF16}
ALPHA_RANGE = (0.8, 1.25)  # a row whose fit is further off than this is left as llama.cpp wrote it
CHUNK_BYTES = 32 << 20  # rows are processed in blocks of about this many float32 bytes


@dataclass
class RescaleStats:
    tensors: int = 0
    rows: int = 0
    rows_skipped: int = 0  # ⟨w, q⟩ ≤ 0, α out of range, or an fp16 overflow
    alpha_sum: float = 0.0
    alpha_min: float = float("inf")
    alpha_max: float = float("-inf")
    per_type: dict[str, int] = field(default_factory=dict)  # quant type -> tensors rescaled

    @property
    def alpha_mean(self) -> float:
        return self.alpha_sum / max(self.rows - self.rows_skipped, 1)

    def as_dict(self) -> dict:
        return {"tensors": self.tensors, "rows": self.rows, "rows_skipped": self.rows_skipped,
                "alpha_mean": self.alpha_mean, "alpha_min": self.alpha_min if self.rows > self.rows_skipped else 1.0,
                "alpha_max": self.alpha_max if self.rows > self.rows_skipped else 1.0, "per_type": dict(self.per_type)}


def row_alpha(w: np.ndarray, q: np.ndarray) -> np.ndarray:
    """α per row: ⟨w, w⟩ / ⟨w, q⟩, or NaN where the quantized row does not point along the original."""
    w = w.astype(np.float64, copy=False)
    num = np.einsum("ij,ij->i", w, w)
    den = np.einsum("ij,ij->i", w, q.astype(np.float64, copy=False))
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.where(den > 0, num / den, np.nan)
    a[(a < ALPHA_RANGE[0]) | (a > ALPHA_RANGE[1])] = np.nan
    return a


def _scale_fields(raw: np.ndarray, offsets: tuple[int, ...], block_bytes: int, alpha: np.ndarray) -> np.ndarray:
    """Multiply the fp16 fields at ``offsets`` of every block in each row of ``raw`` (rows, bytes) by α (rows,).

    Rows whose new scales would overflow fp16 are left unchanged; returns the mask of rows changed.
    """
    blocks = raw.reshape(raw.shape[0], -1, block_bytes)
    fields = [blocks[:, :, o:o + 2].copy().view(np.float16)[..., 0].astype(np.float64) for o in offsets]
    target = [f * alpha[:, None] for f in fields]
    ok = np.isfinite(alpha)
    for t in target:
        ok &= np.all(np.abs(t) <= np.finfo(np.float16).max, axis=1)
    for o, t, f in zip(offsets, target, fields):
        new = t.astype(np.float16)
        # A scale moves only when its fp16 rounding lands nearer the target than the old value: small scales
        # (subnormal in fp16, as Q6_K's often are) would otherwise jump by more than the correction.
        closer = np.abs(new.astype(np.float64) - t) < np.abs(f - t)
        val = np.where(ok[:, None] & closer, new, f.astype(np.float16))
        blocks[:, :, o:o + 2] = val[..., None].view(np.uint8).reshape(blocks.shape[0], blocks.shape[1], 2)
    return ok


def rescale_rows(reference: str | os.PathLike, quantized: str | os.PathLike) -> RescaleStats:
    """Patch the block scales of ``quantized`` in place so each row is unbiased against ``reference``.

    ``reference`` is the float GGUF (F32/F16/BF16) that ``quantized`` was made from; tensors are matched by
    name and must have the same shape. Streams a block of rows at a time: memory stays near CHUNK_BYTES.
    """
    reference, quantized = Path(reference), Path(quantized)
    try:
        ref = gguf.GGUFReader(reference)
        qr = gguf.GGUFReader(quantized, mode="r+")
    except (ValueError, OSError) as e:
        raise DownsizeError(f"cannot read GGUF for row rescaling ({e})", hint="pass the float GGUF and its quantized copy")
    ref_t = {t.name: t for t in ref.tensors}
    work = []  # checked in full before any byte is written, so a refused reference leaves the file as it was
    for t in qr.tensors:
        qtype = Q(t.tensor_type)
        if qtype not in SCALE_FIELDS or t.name not in ref_t:
            continue
        r = ref_t[t.name]
        if Q(r.tensor_type) not in FLOAT_TYPES:
            raise DownsizeError(f"{reference} holds {t.name} as {Q(r.tensor_type).name}, not a float type",
                                hint="rescale against the F32/F16/BF16 GGUF the quantized file was made from")
        if [int(x) for x in r.shape] != [int(x) for x in t.shape]:
            raise DownsizeError(f"{t.name} has shape {list(r.shape)} in {reference} but {list(t.shape)} in {quantized}",
                                hint="rescale against the GGUF the quantized file was made from")
        work.append((t, r, qtype))
    stats = RescaleStats()
    from downsize.console import progress

    for t, r, qtype in progress(work, desc="rescaling quantized rows", unit="tensor"):
        ne0 = int(t.shape[0])
        block_elems, block_bytes = gguf.GGML_QUANT_SIZES[qtype]
        qraw = t.data.reshape(-1, ne0 // block_elems * block_bytes)
        wraw = r.data.reshape(qraw.shape[0], -1)
        step = max(1, CHUNK_BYTES // (4 * ne0))
        for i in range(0, qraw.shape[0], step):
            w = dequantize(np.asarray(wraw[i:i + step]), r.tensor_type).reshape(-1, ne0)
            qd = dequantize(np.asarray(qraw[i:i + step]), qtype).reshape(-1, ne0)
            alpha = row_alpha(w, qd)
            ok = _scale_fields(qraw[i:i + step], SCALE_FIELDS[qtype], block_bytes, alpha)
            stats.rows += len(alpha)
            stats.rows_skipped += int((~ok).sum())
            if ok.any():
                a = alpha[ok]
                stats.alpha_sum += float(a.sum())
                stats.alpha_min = min(stats.alpha_min, float(a.min()))
                stats.alpha_max = max(stats.alpha_max, float(a.max()))
        stats.tensors += 1
        stats.per_type[qtype.name] = stats.per_type.get(qtype.name, 0) + 1
    qr.data.flush()
    del qr
    return stats
