"""Importance matrix for llama.cpp's low-bit quantizers, computed from calibration data on the HF model.

For every linear layer llama.cpp quantizes, the importance of input column j is E[x_j²] over calibration
tokens (what llama.cpp's ``llama-imatrix`` accumulates; a tied embedding/output matrix gets no entry, as
there). We hook the inputs of the model's ``nn.Linear`` modules in PyTorch, name each by its GGUF tensor (the
family adapter's name map), and write llama.cpp's imatrix GGUF format (``<tensor>.in_sum2`` and
``<tensor>.counts``), which ``llama-quantize --imatrix`` reads too.

    >>> from downsize.export.gguf import export_gguf
    >>> im = compute_imatrix("zoo:coder-teacher-qwen", "zoo:stdlib", ImatrixConfig(n_samples=4, seq_len=32))
    >>> write_imatrix(im, "teacher.imatrix.gguf").exists()
    True
    >>> export_gguf("zoo:coder-teacher-qwen", "teacher-q4_k_m.gguf", "Q4_K_M", imatrix="teacher.imatrix.gguf").quant
    'Q4_K_M'

Memory is bounded by one decoder layer, not the model: the model is built on the meta device, the
embedding, final norm and LM head are read from the safetensors, and each decoder layer's weights are
read (in fp32) just before its forward and dropped right after, so a 7B checkpoint needs about one
layer (0.9 GB fp32) plus the embedding and the calibration activations. ``ImatrixConfig(stream=False)``,
a GGUF source, or a checkpoint whose tensor names differ from the model's load the whole fp32 model.

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
    stream: bool = True  # one decoder layer's weights in memory at a time (see the module docstring)


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
    from downsize.models.refs import load_model, load_tokenizer, resolve_model
    from downsize.prune.calib import calibration_ids

    ref = resolve_model(model_ref) if isinstance(model_ref, (str, os.PathLike)) else model_ref
    streamed = _StreamedModel.open(ref.path) if cfg.stream and not ref.is_gguf else None
    if streamed is not None:
        model, tok = streamed.model, load_tokenizer(ref)
    else:
        model, tok = load_model(ref, dtype=torch.float32)
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
    if streamed is not None:
        handles += streamed.hooks()
    # a tied head gets no entry, so its (B, T, V) logits (311 MB per 2 x 256 at V = 152k) need not exist
    head_kw = {"logits_to_keep": 1} if family.tied else {}
    from downsize.prune.calib import batches

    try:
        with torch.no_grad():
            for b in batches(ids, cfg.batch_size, desc="importance matrix"):
                model(b, **head_kw)
    finally:
        for h in handles:
            h.remove()
    return im


class _StreamedModel:
    """A causal LM on the meta device whose decoder layers read their weights from the safetensors files
    just before their forward and drop them after it (fp32 compute, one layer resident)."""

    def __init__(self, model, layers, prefix: str, where: dict[str, Path]):
        self.model, self.layers, self.prefix, self.where = model, layers, prefix, where

    @classmethod
    def open(cls, path: Path) -> "_StreamedModel | None":
        """None when the checkpoint or the family does not allow it (the caller loads the whole model)."""
        import logging

        from accelerate import init_empty_weights
        from safetensors import safe_open
        from transformers import AutoConfig, AutoModelForCausalLM

        log = logging.getLogger(__name__)
        files = sorted(Path(path).glob("*.safetensors"))
        if not files:
            return None
        config = AutoConfig.from_pretrained(str(path))
        with init_empty_weights(include_buffers=False):  # parameters on meta; buffers (rotary tables) built for real
            model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        layers = model.get_decoder().layers
        prefix = next(n for n, m in model.named_modules() if m is layers) + "."
        where = {}
        for f in files:
            with safe_open(f, "pt") as r:
                where.update({k: f for k in r.keys()})
        expected = set(model.state_dict())
        if not set(where) <= expected | {k for k in where if k.startswith(prefix)}:
            log.info("imatrix: checkpoint names differ from the model's; loading the whole model")
            return None
        self = cls(model, layers, prefix, where)
        model.load_state_dict(self._read([k for k in where if not k.startswith(prefix)]), strict=False, assign=True)
        model.tie_weights()
        outside = [n for n, p in model.named_parameters() if p.is_meta and not n.startswith(prefix)]
        if outside:
            log.info("imatrix: %s not in the checkpoint; loading the whole model", ", ".join(outside[:3]))
            return None
        return self

    def _read(self, keys) -> dict[str, torch.Tensor]:
        from safetensors import safe_open

        out = {}
        by_file: dict[Path, list[str]] = {}
        for k in keys:
            by_file.setdefault(self.where[k], []).append(k)
        for f, ks in by_file.items():
            with safe_open(f, "pt") as r:  # opened per read, so no mapping of the whole file stays resident
                out.update({k: r.get_tensor(k).to(torch.float32) for k in ks})
        return out

    def hooks(self) -> list:
        handles = []
        for i, layer in enumerate(self.layers):
            p = f"{self.prefix}{i}."

            def load(mod, _args, _p=p):
                sd = self._read([k for k in self.where if k.startswith(_p)])
                mod.load_state_dict({k[len(_p):]: v for k, v in sd.items()}, strict=True, assign=True)

            def drop(mod, _args, _out):
                _drop_params(mod)

            handles += [layer.register_forward_pre_hook(load), layer.register_forward_hook(drop)]
        return handles


def _drop_params(module: torch.nn.Module) -> None:
    """Put ``module``'s parameters back on the meta device (its buffers, e.g. rotary tables, stay)."""
    for m in module.modules():
        for n, p in list(m.named_parameters(recurse=False)):
            setattr(m, n, torch.nn.Parameter(torch.empty_like(p, device="meta"), requires_grad=False))


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
