"""Calibration data for pruning, and the layer-by-layer runner that keeps memory near one layer's activations.

    >>> import torch
    >>> from downsize.models.adapters import adapter_for
    >>> from downsize.models.refs import load_model
    >>> model, tok = load_model("zoo:coder-teacher-qwen")
    >>> ids = calibration_ids(tok, "zoo:stdlib", n_samples=4, seq_len=32)    # LongTensor (4, 32)
    >>> ids.shape, ids.dtype
    (torch.Size([4, 32]), torch.int64)
    >>> runner = LayerRunner(model, adapter_for(model), ids, batch_size=2)
    >>> seen = []
    >>> hook = lambda m, args, out: seen.append(args[0].shape)
    >>> for i, layer in enumerate(runner.layers):
    ...     h = layer.mlp.down_proj.register_forward_hook(hook)
    ...     _ = runner.run(i)                # forward the calibration batches through layer i only (stats via hooks)
    ...     h.remove()
    ...     runner.advance(i)             # layer i's outputs (after pruning it) are the input of layer i + 1
    >>> len(seen), seen[0]               # 4 layers x 2 batches, (B, T, ffn)
    (8, torch.Size([2, 32, 768]))
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np
import torch

from downsize.errors import DownsizeError


def calibration_ids(tokenizer, data: Any, n_samples: int, seq_len: int, seed: int = 0, split: str = "train") -> torch.Tensor:
    """``n_samples`` random windows of ``seq_len`` tokens (fewer if the data is short) as a LongTensor (N, T).

    ``data`` is a data reference (``zoo:stdlib``, a file, a directory, JSONL), a list of texts, a
    1-D token array, or a ready (N, T) tensor of token ids.
    """
    if torch.is_tensor(data) and data.ndim == 2:
        if data.numel() == 0:
            raise DownsizeError("the calibration tensor is empty", hint="give at least one sequence of token ids")
        return data.long()
    if isinstance(data, np.ndarray) or (torch.is_tensor(data) and data.ndim == 1):
        stream = np.asarray(data)
    elif isinstance(data, (list, tuple)):
        from downsize.data.packing import tokenize_documents

        texts = [t for t in data if isinstance(t, str) and t.strip()]
        stream = tokenize_documents(tokenizer, texts) if texts else np.zeros(0, dtype=np.uint32)
    else:
        from downsize.data.stream import token_stream
        from downsize.errors import reading

        with reading(data):
            stream = token_stream(tokenizer, str(data), "calib", split if split != "train" else None)
    if len(stream) < 2:
        raise DownsizeError(f"the calibration data {data if isinstance(data, str) else type(data).__name__} "
                            f"has {len(stream)} tokens; pruning needs at least a few hundred",
                            hint="pass a data reference with text in it, e.g. --calib zoo:stdlib or a folder of your code")
    seq_len = min(seq_len, len(stream))
    n_windows = len(stream) // seq_len
    rng = np.random.default_rng(seed)
    starts = rng.permutation(n_windows)[:n_samples] * seq_len
    return torch.from_numpy(np.stack([np.asarray(stream[s : s + seq_len], dtype=np.int64) for s in sorted(starts)]))


def batches(ids: torch.Tensor, batch_size: int, desc: str | None = None) -> Iterable[torch.Tensor]:
    """``ids`` in batches of ``batch_size`` rows; with ``desc``, a progress bar of the tokens done (tok/s, ETA)."""
    from downsize.console import progress

    bar = progress(total=ids.numel(), desc=desc, unit="tok", enabled=desc is not None)
    try:
        for i in range(0, len(ids), batch_size):
            b = ids[i : i + batch_size]
            yield b
            bar.update(b.numel())
    finally:
        bar.close()


class _Stop(Exception):
    pass


class LayerRunner:
    """Feed calibration batches through one decoder layer at a time.

    One forward of the full model records the inputs of layer 0 and the keyword arguments every
    layer receives (attention mask, rotary position embeddings: shared tensors, so cheap). Then
    layer ``i`` runs alone on the stored hidden states; ``advance(i)`` replaces them with its
    outputs. Peak memory: the model plus one copy of the calibration hidden states (N, T, hidden).
    """

    def __init__(self, model, adapter, ids: torch.Tensor, batch_size: int = 8):
        self.model, self.adapter = model, adapter
        self.layers = adapter.layers(model)
        self.device = next(model.parameters()).device
        self.hidden: list[torch.Tensor] = []  # per batch: (B, T, hidden)
        self.kwargs: list[list[dict]] = []  # per batch, per layer
        for b in batches(ids, batch_size, desc="calibration: layer inputs"):
            per_layer: list[dict] = [None] * len(self.layers)  # type: ignore[list-item]
            handles = []

            def make(i):
                def pre(mod, args, kwargs):
                    kw = dict(kwargs)
                    kw.pop("hidden_states", None)
                    kw["use_cache"] = False
                    from downsize.models.compat import CACHE_ARG  # imports transformers: only when run

                    kw[CACHE_ARG] = None
                    per_layer[i] = kw
                    if i == 0:
                        self.hidden.append((args[0] if args else kwargs["hidden_states"]).detach())
                    if i == len(self.layers) - 1:
                        raise _Stop
                return pre

            for i, layer in enumerate(self.layers):
                handles.append(layer.register_forward_pre_hook(make(i), with_kwargs=True))
            try:
                with torch.no_grad():
                    model(input_ids=b.to(self.device), use_cache=False)
            except _Stop:
                pass
            finally:
                for h in handles:
                    h.remove()
            self.kwargs.append(per_layer)

    @torch.no_grad()
    def forward_layer(self, i: int, hidden: torch.Tensor, kw: dict) -> torch.Tensor:
        out = self.layers[i](hidden, **kw)
        return out[0] if isinstance(out, tuple) else out

    @torch.no_grad()
    def run(self, i: int) -> list[torch.Tensor]:
        """Outputs of layer ``i`` for every batch (hooks registered by the caller see the inputs)."""
        return [self.forward_layer(i, h, kws[i]) for h, kws in zip(self.hidden, self.kwargs)]

    @torch.no_grad()
    def input_stats(self, i: int, modules: dict, stat) -> dict:
        """Run layer ``i`` and sum ``stat(x)`` over the inputs ``x`` (tokens, in; float64) each of ``modules``
        receives: ``x.T @ x`` for SparseGPT's Hessian and whitened low-rank, ``x.pow(2).sum(0)`` for Wanda."""
        sums: dict = {name: None for name in modules}

        def make(name):
            def hook(mod, a):
                s = stat(a[0].detach().reshape(-1, a[0].shape[-1]).double())
                sums[name] = s if sums[name] is None else sums[name] + s
            return hook

        handles = [m.register_forward_pre_hook(make(name)) for name, m in modules.items()]
        try:
            self.run(i)
        finally:
            for h in handles:
                h.remove()
        return sums

    def advance(self, i: int) -> None:
        self.hidden = self.run(i)
