"""Pruning: depth, width (Minitron), unstructured and N:M (magnitude, Wanda, SparseGPT), low-rank.

    >>> from downsize.prune import prune, PruneConfig, save_pruned
    >>> from downsize.models.refs import load_model
    >>> model, tok = load_model("zoo:coder-teacher-qwen")                   # Qwen2, ffn 768, 4 heads, hidden 256
    >>> cfg = PruneConfig(method="width", targets={"ffn": 256, "heads": 2, "hidden": 128}, calib_samples=4, calib_seq_len=32)
    >>> model = prune(model, tok, cfg, "zoo:stdlib")          # same HF class, consistent config
    >>> c = model.config; c.intermediate_size, c.num_attention_heads, c.hidden_size
    (256, 2, 128)
    >>> path = save_pruned(model, tok, "pruned", model.prune_report)
    >>> sorted(p.name for p in path.iterdir() if p.suffix in (".json", ".safetensors"))    # a plain HF directory
    ['.downsize.json', 'config.json', 'generation_config.json', 'model.safetensors', 'prune_report.json',
     'tokenizer.json', 'tokenizer_config.json']

``prune`` checks everything it can before it reads calibration data or touches a weight: the
family has an adapter, the target can be met, N:M divides every width, the calibration data is
not empty. Structured results (depth, width, lowrank hidden=D) are plain models that
``AutoModelForCausalLM.from_pretrained`` loads without custom code.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch

from downsize.errors import DownsizeError
from downsize.prune.config import DEPTH_SCORES, UNSTRUCTURED, PruneConfig, parse_nm, parse_targets
from downsize.prune.registry import METHODS, ensure_loaded
from downsize.prune.sizes import model_params

log = logging.getLogger(__name__)
REPORT_FILE = "prune_report.json"


def _peak_rss_mib() -> float:
    from downsize.eval.speed import peak_rss_mb

    return peak_rss_mb()


def prune(model, tokenizer, cfg: PruneConfig, calib_data_ref="zoo:stdlib"):
    """Prune ``model`` in place by ``cfg.method`` and return it; ``model.prune_report`` holds what was done.

    ``calib_data_ref``: a data reference (``zoo:stdlib``, a file, a folder, JSONL), a list of texts,
    a token array, or an (N, T) tensor of token ids. Magnitude pruning ignores it.
    """
    from downsize.models.adapters import adapter_for
    from downsize.prune.calib import calibration_ids

    ensure_loaded()
    method = METHODS[cfg.method]
    adapter = adapter_for(model)
    method.check(model, adapter, cfg)
    ids = None
    if method.needs_calib:
        if tokenizer is None and not torch.is_tensor(calib_data_ref):
            raise DownsizeError("calibration data needs the model's tokenizer", hint="pass the tokenizer to prune()")
        ids = calibration_ids(tokenizer, calib_data_ref, cfg.calib_samples, cfg.calib_seq_len, cfg.seed, cfg.calib_split)
        if ids.max() >= model.get_input_embeddings().num_embeddings:
            raise DownsizeError(f"calibration token id {int(ids.max())} is outside the model's vocabulary "
                                f"({model.get_input_embeddings().num_embeddings})", hint="tokenise with the model's own tokenizer")
    params_before = model_params(model)
    was_training = model.training
    model.eval()
    t0 = time.perf_counter()
    detail = method.fn(model, adapter, cfg, ids)
    wall = time.perf_counter() - t0
    model.train(was_training)
    params_after = model_params(model)
    report = {
        "method": cfg.method,
        "config": {k: (dict(v) if k == "targets" else v) for k, v in cfg.__dict__.items()},
        "architecture": model.config.architectures[0],
        "params": {"before": params_before, "after": params_after, "ratio": round(params_after / params_before, 4)},
        "calibration": None if ids is None else {"sequences": int(ids.shape[0]), "seq_len": int(ids.shape[1]),
                                                   "tokens": int(ids.numel())},
        "wall_s": round(wall, 2),
        "peak_rss_mib": round(_peak_rss_mib(), 1),
        **detail,
    }
    model.prune_report = report
    from downsize.console import fmt_duration, fmt_params

    log.info("pruned with %s: %s -> %s parameters in %s", cfg.method, fmt_params(params_before), fmt_params(params_after),
             fmt_duration(wall))
    return model


def save_pruned(model, tokenizer, out_dir, report: dict | None = None, dtype: torch.dtype | None = None,
                overwrite: bool = False) -> Path:
    """Write a normal HF directory: config, model.safetensors, tokenizer, generation config, prune_report.json.

    ``out_dir`` must be new, empty or a previous prune output unless ``overwrite`` (downsize.io.check_output).
    """
    from downsize.io import KIND_PRUNE, atomic_dir, write_json_atomic

    out = Path(out_dir)
    report = report if report is not None else getattr(model, "prune_report", None)
    with atomic_dir(out, KIND_PRUNE, overwrite) as tmp:
        m = model.to(dtype) if dtype is not None else model
        m.save_pretrained(tmp, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        if report is not None:
            write_json_atomic(tmp / REPORT_FILE, report)
    return out


def prune_ref(model_ref: str, out_dir, cfg: PruneConfig, calib_data_ref="zoo:stdlib", dtype=None,
              overwrite: bool = False, device: str = "auto") -> dict:
    """Load a model reference, prune it, save it; returns the report (the CLI and recipe runner call this).
    ``device``: where calibration runs (``models.placement``: the GPU when there is one, else the CPU)."""
    from downsize.io import KIND_PRUNE, check_output
    from downsize.models.placement import Placement, load_placed
    from downsize.models.refs import read_config, resolve_model

    check_output(out_dir, KIND_PRUNE, overwrite)  # before any work
    ref = resolve_model(model_ref)
    if isinstance(calib_data_ref, str):
        from downsize.data.refs import resolve_data

        resolve_data(calib_data_ref)  # fail on bad calibration data before the model loads
    if dtype is None and not ref.is_gguf:  # save in the source checkpoint's float type (pruning runs in fp32)
        src = read_config(ref.path)
        dtype = {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(str(src.get("dtype") or src.get("torch_dtype")))
    model, tok = load_placed(ref, Placement(device, "fp32"))  # scores and slicing run in fp32
    prune(model, tok, cfg, calib_data_ref)
    save_pruned(model, tok, out_dir, model.prune_report, dtype, overwrite)
    return model.prune_report


ensure_loaded()  # fill METHODS

__all__ = ["DEPTH_SCORES", "METHODS", "PruneConfig", "UNSTRUCTURED", "parse_nm", "parse_targets", "prune", "prune_ref",
           "save_pruned"]
