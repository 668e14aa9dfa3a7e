"""The one typed config of the prune stage, validated on construction (model-independent checks).

    >>> PruneConfig(method="width", targets=parse_targets("ffn=512 heads=4 hidden=256")).targets["ffn"]
    512
    >>> PruneConfig(method="sparsegpt", nm="2:4").nm, parse_nm("2:4")
    ('2:4', (2, 4))
    >>> PruneConfig(method="depth", targets={"layers": 2}, depth_score="ppl").depth_score
    'ppl'
    >>> PruneConfig(method="wanda")            # sparsity or nm is required
    Traceback (most recent call last):
    ...
    downsize.errors.DownsizeError: wanda needs exactly one of sparsity and nm
      hint: e.g. --sparsity 0.5 or --nm 2:4
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

from downsize.errors import DownsizeError

WIDTH_TARGETS = ("ffn", "heads", "kv_heads", "hidden", "params")
DEPTH_TARGETS = ("layers", "remove", "params")  # layers: how many to keep; remove: how many to drop
DEPTH_SCORES = ("bi", "ppl")
UNSTRUCTURED = ("magnitude", "wanda", "sparsegpt")
LOWRANK_TARGETS = ("rank", "energy", "hidden")


def parse_targets(text: str | Mapping | None) -> dict[str, float]:
    """``"ffn=1024 heads=4 hidden=256"`` or ``"params=0.5"`` -> a dict; ints stay ints."""
    if text is None:
        return {}
    if isinstance(text, Mapping):
        text = " ".join(f"{k}={v}" for k, v in text.items())
    out: dict[str, float] = {}
    for part in str(text).replace(",", " ").split():
        key, sep, val = part.partition("=")
        if not sep or not key or not val:
            raise DownsizeError(f"cannot read target {part!r}", hint="write KEY=VALUE pairs, e.g. 'ffn=1024 heads=4 hidden=256' or 'params=0.5'")
        try:
            num = float(val)
        except ValueError:
            raise DownsizeError(f"target {key}={val!r} is not a number", hint="e.g. ffn=1024 or params=0.5") from None
        out[key] = int(num) if num.is_integer() and key != "params" and "." not in val else num
    return out


def parse_nm(nm: str | None) -> tuple[int, int] | None:
    if nm is None:
        return None
    n, sep, m = str(nm).partition(":")
    try:
        n_i, m_i = int(n), int(m)
    except ValueError:
        n_i = m_i = 0
    if not sep or not (0 < n_i < m_i):
        raise DownsizeError(f"N:M pattern {nm!r} is malformed", hint="write N:M with 0 < N < M, e.g. 2:4 or 4:8 (N zeros in every M weights)")
    return n_i, m_i


@dataclass(frozen=True)
class PruneConfig:
    method: str
    targets: Mapping[str, float] = field(default_factory=dict)  # width/depth/lowrank sizes, see *_TARGETS
    sparsity: float | None = None  # unstructured ratio of zeros per linear
    nm: str | None = None  # "2:4": N zeros in every M consecutive input weights of each row
    depth_score: str = "bi"  # "bi": block influence 1 - cos(in, out); "ppl": perplexity increase when dropped
    calib_samples: int = 64
    calib_seq_len: int = 256
    calib_split: str = "train"
    batch_size: int = 8
    seed: int = 0
    round_to: int = 32  # sizes resolved from a params budget are multiples of this (GGUF quant blocks are 32)
    # ...and multiples of this where the source size is one: llama.cpp's K-quants (Q4_K_M...) pack rows in
    # 256-wide super-blocks and fall back to Q5_0/Q8_0 for any row that is not (0 = off: round_to only)
    quant_align: int = 256
    norm_correction: bool = True  # width: rescale norms for the RMS lost with pruned hidden channels
    blocksize: int = 128  # SparseGPT column block
    damp: float = 0.01  # SparseGPT / low-rank: dampening as a fraction of mean(diag(H))

    def __post_init__(self):
        object.__setattr__(self, "targets", MappingProxyType(parse_targets(self.targets)))
        from downsize.prune.registry import METHODS, ensure_loaded

        ensure_loaded()

        if self.method not in METHODS:
            raise DownsizeError(f"unknown prune method {self.method!r}", hint=f"choose one of {', '.join(sorted(METHODS))}")
        allowed = METHODS[self.method].targets
        bad = [k for k in self.targets if k not in allowed]
        if bad:
            raise DownsizeError(f"method {self.method!r} does not take target(s) {', '.join(bad)}",
                                hint=f"its targets are: {', '.join(allowed) or 'none'}")
        for k, v in self.targets.items():
            if not isinstance(v, (int, float)) or v <= 0:
                raise DownsizeError(f"target {k}={v} must be a positive number")
        if "params" in self.targets and not 0 < self.targets["params"] < 1:
            raise DownsizeError(f"params={self.targets['params']} must be a fraction of the current size in (0, 1)",
                                hint="e.g. params=0.5 keeps half the parameters")
        if self.method in UNSTRUCTURED:
            if (self.sparsity is None) == (self.nm is None):
                raise DownsizeError(f"{self.method} needs exactly one of sparsity and nm",
                                    hint="e.g. --sparsity 0.5 or --nm 2:4")
            if self.sparsity is not None and not 0 < self.sparsity < 1:
                raise DownsizeError(f"sparsity {self.sparsity} must be in (0, 1)", hint="0.5 zeros half the weights")
            parse_nm(self.nm)
        elif self.sparsity is not None or self.nm is not None:
            raise DownsizeError(f"sparsity/nm apply to {', '.join(UNSTRUCTURED)}, not {self.method}")
        if self.method in ("width", "depth", "lowrank") and not self.targets:
            raise DownsizeError(f"{self.method} pruning needs a target", hint=f"one or more of {', '.join(allowed)}")
        if self.depth_score not in DEPTH_SCORES:
            raise DownsizeError(f"depth_score {self.depth_score!r} unknown", hint=f"choose {' or '.join(DEPTH_SCORES)}")
        if self.calib_samples < 1 or self.calib_seq_len < 2 or self.batch_size < 1:
            raise DownsizeError("calib_samples, batch_size must be >= 1 and calib_seq_len >= 2")
        if self.round_to < 1 or self.quant_align < 0:
            raise DownsizeError(f"round_to={self.round_to} must be >= 1 and quant_align={self.quant_align} >= 0",
                                hint="quant_align=256 matches llama.cpp's K-quant super-blocks; 0 turns it off")
        if not 0 <= self.damp < 1:
            raise DownsizeError(f"damp {self.damp} must be in [0, 1)")
