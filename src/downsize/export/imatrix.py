"""Importance matrix for llama.cpp's low-bit quantizers, computed from calibration data on the HF model.

For every linear layer llama.cpp quantizes, the importance of input column j is E[x_j²] over calibration
tokens (what llama.cpp's ``llama-imatrix`` accumulates; a tied embedding/output matrix gets no entry, as
there). We hook the inputs of the model's ``nn.Linear`` modules in PyTorch, name each by its GGUF tensor (the
family adapter's name map), and write llama.cpp's imatrix GGUF format (``<tensor>.in_sum2`` and
``<tensor>.counts``), which ``llama-quantize --imatrix`` reads too.

    >>> im = compute_imatrix("zoo:coder-teacher", "zoo:stdlib", ImatrixConfig(n_samples=64, seq_len=256))
    >>> write_imatrix(im, "teacher.imatrix.gguf")
    >>> export_gguf("zoo:coder-teacher", "teacher-q4_k_m.gguf", "Q4_K_M", imatrix="teacher.imatrix.gguf")

Why not build llama-imatrix from the vendored sources: it needs a C++ toolchain and minutes of compile on
the user's machine, and runs the already-quantizable F32 GGUF; the HF forward pass gives the same statistic
(inputs of each matmul) on the model we are exporting, with no build step.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import gguf
import numpy as np
import torch

from downsize.errors import DownsizeError
from downsize.io import atomic_path

IN_SUM2, COUNTS = ".in_sum2", ".counts"


@dataclass(frozen=True)
class ImatrixConfig:
    n_samples: int = 64  # calibration windows
    seq_len: int = 256
    batch_size: int = 8
    split: str = "train"
    seed: int = 0


@dataclass
class Imatrix:
    sums: dict[str, np.ndarray] = field(default_factory=dict)  # gguf tensor name -> Σ x_j² over tokens, (in_features,)
    counts: dict[str, int] = field(default_factory=dict)  # gguf tensor name -> tokens seen
    chunk_count: int = 0
    chunk_size: int = 0
    datasets: list[str] = field(default_factory=list)

    def means(self) -> dict[str, np.ndarray]:
        """{tensor: E[x²]} as llama.cpp's quantizer consumes it."""
        return {k: (v / max(self.counts[k], 1)).astype(np.float32) for k, v in self.sums.items()}


def compute_imatrix(model_ref, data="zoo:stdlib", cfg: ImatrixConfig = ImatrixConfig()) -> Imatrix:
    """Run calibration windows through the HF model and accumulate Σ x² per input column of every linear layer."""
    from downsize.export.gguf import family_for
    from downsize.models.refs import load_model
    from downsize.prune.calib import calibration_ids

    model, tok = load_model(model_ref, dtype=torch.float32)
    model.eval()
    family = family_for(model.config)
    ids = calibration_ids(tok, data, cfg.n_samples, cfg.seq_len, seed=cfg.seed, split=cfg.split)  # (N, T)
    im = Imatrix(chunk_count=int(ids.shape[0]), chunk_size=int(ids.shape[1]),
                 datasets=[data if isinstance(data, str) else type(data).__name__])
    handles = []
    for mod_name, mod in model.named_modules():
        if not isinstance(mod, torch.nn.Linear):
            continue
        hf = f"{mod_name}.weight"
        if hf == "lm_head.weight" and family.tied:
            # The tied matrix is token_embd, which is also the embedding table: weighting its columns by the final
            # hidden states' E[x²] serves the output role at the cost of the lookup. llama-imatrix records no entry
            # for it either (only blk.* and output.weight); measured here, the entry cost 0.0002–0.0006 nats/token.
            continue
        name = family.tensor_name(hf)
        if name is None:
            continue
        im.sums[name] = np.zeros(mod.in_features, dtype=np.float64)
        im.counts[name] = 0

        def hook(_m, args, _name=name):
            x = args[0].detach().reshape(-1, args[0].shape[-1]).double()  # (tokens, in)
            im.sums[_name] += (x * x).sum(0).numpy()
            im.counts[_name] += x.shape[0]

        handles.append(mod.register_forward_pre_hook(hook))
    try:
        with torch.no_grad():
            for i in range(0, ids.shape[0], cfg.batch_size):
                model(ids[i : i + cfg.batch_size])
    finally:
        for h in handles:
            h.remove()
    return im


def write_imatrix(im: Imatrix, path: str | os.PathLike) -> Path:
    """Write llama.cpp's imatrix GGUF (general.type = imatrix); atomic."""
    path = Path(path)
    w = gguf.GGUFWriter(None, "imatrix")
    w.add_type("imatrix")
    w.add_uint32(gguf.Keys.IMatrix.CHUNK_COUNT, im.chunk_count)
    w.add_uint32(gguf.Keys.IMatrix.CHUNK_SIZE, im.chunk_size)
    w.add_array(gguf.Keys.IMatrix.DATASETS, im.datasets or ["unknown"])
    for name in sorted(im.sums):
        w.add_tensor(name + IN_SUM2, im.sums[name].astype(np.float32).reshape(1, -1))
        w.add_tensor(name + COUNTS, np.asarray([[float(im.counts[name])]], dtype=np.float32))
    with atomic_path(path) as tmp:
        w.write_header_to_file(tmp)
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
    return path


def read_imatrix(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """{tensor: E[x²]} from a llama.cpp imatrix GGUF (ours or llama-imatrix's)."""
    path = Path(path)
    if not path.exists():
        raise DownsizeError(f"no importance matrix at {path}", hint="compute one with `downsize export gguf --calib DATA`")
    try:
        r = gguf.GGUFReader(path)
    except (ValueError, OSError) as e:
        raise DownsizeError(f"{path} is not an imatrix GGUF ({e})",
                            hint="pass a file written by downsize or llama-imatrix (the GGUF format, not legacy .dat)") from None
    sums = {t.name[: -len(IN_SUM2)]: np.asarray(t.data, dtype=np.float32).reshape(-1) for t in r.tensors if t.name.endswith(IN_SUM2)}
    counts = {t.name[: -len(COUNTS)]: np.asarray(t.data, dtype=np.float32).reshape(-1) for t in r.tensors if t.name.endswith(COUNTS)}
    if not sums or set(sums) != set(counts):
        raise DownsizeError(f"{path} holds no matching in_sum2/counts tensors", hint="recompute the importance matrix")
    out = {}
    for name, s in sums.items():
        c = counts[name]
        per = s.size // c.size  # columns per expert
        out[name] = np.concatenate([s[j * per:(j + 1) * per] / c[j] if c[j] > 0 else np.ones(per, np.float32)
                                    for j in range(c.size)]).astype(np.float32)
    return out
