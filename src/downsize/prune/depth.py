"""Depth pruning: score every decoder layer on calibration data and remove the least important ones.

    >>> from downsize.models.refs import load_model
    >>> from downsize.prune import PruneConfig, prune
    >>> model, tok = load_model("zoo:coder-teacher-qwen")
    >>> cfg = PruneConfig(method="depth", targets={"remove": 2}, depth_score="bi", calib_samples=4, calib_seq_len=32)
    >>> model = prune(model, tok, cfg, "zoo:stdlib")     # 4 layers -> 2; config and layer indices rewritten
    >>> model.config.num_hidden_layers, [l.self_attn.layer_idx for l in model.model.layers]
    (2, [0, 1])

Scores: ``bi`` is block influence, 1 - cos(input, output) of a layer's hidden states (ShortGPT); a
layer that barely changes the residual stream scores near 0. ``ppl`` is the calibration
perplexity increase when the layer alone is skipped (Shortened LLaMA). Layers are removed in one
shot by ascending score. Targets: ``remove=N``, ``layers=K`` (keep K) or ``params=F`` (drop the
fewest layers that bring the parameter count to at most F times the current one).
"""

from __future__ import annotations

from downsize.errors import DownsizeError
from downsize.prune.importance import block_influence, ppl_increase
from downsize.prune.registry import register_method
from downsize.prune.sizes import param_count


def layers_to_remove(model, adapter, targets) -> int:
    n = adapter.num_layers(model.config)
    if "remove" in targets:
        r = int(targets["remove"])
    elif "layers" in targets:
        r = n - int(targets["layers"])
    else:
        full = param_count(model.config)
        goal = targets["params"] * full
        r = next((k for k in range(1, n) if param_count(model.config, num_hidden_layers=n - k) <= goal), None)
        if r is None:
            one = param_count(model.config, num_hidden_layers=1)
            raise DownsizeError(f"params={targets['params']} asks for {goal:,.0f} parameters, but even one decoder layer "
                                f"leaves {one:,} ({one / full:.0%}): embeddings and LM head alone take the rest",
                                hint=f"ask for params >= {one / full:.2f}, or use width pruning (it shrinks the embeddings too)")
    return r


def check(model, adapter, cfg) -> None:
    if len(cfg.targets) != 1:
        raise DownsizeError(f"depth pruning takes one target, got {dict(cfg.targets)}", hint="remove=N, layers=K or params=F")
    n = adapter.num_layers(model.config)
    r = layers_to_remove(model, adapter, cfg.targets)
    if not 0 < r < n:
        raise DownsizeError(f"the model has {n} decoder layers; the target {dict(cfg.targets)} would remove {r}",
                            hint=f"remove between 1 and {n - 1} layers")


@register_method("depth", check=check, targets=("remove", "layers", "params"), structured=True)
def prune_depth(model, adapter, cfg, ids) -> dict:
    n = adapter.num_layers(model.config)
    r = layers_to_remove(model, adapter, cfg.targets)
    scorer = block_influence if cfg.depth_score == "bi" else ppl_increase
    scores = scorer(model, adapter, ids, cfg.batch_size)
    order = sorted(range(n), key=lambda i: (float(scores[i]), i))
    removed = sorted(order[:r])
    keep = [i for i in range(n) if i not in removed]
    adapter.set_layers(model, keep)
    return {"score": cfg.depth_score, "scores": [round(float(s), 6) for s in scores], "removed_layers": removed,
            "kept_layers": keep, "layers": {"before": n, "after": len(keep)}}
