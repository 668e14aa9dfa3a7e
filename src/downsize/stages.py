"""Stage runners for recipes: each adapts a stage's typed settings to the library function it calls.

    >>> from downsize.pipeline import STAGE_RUNNERS
    >>> sorted(STAGE_RUNNERS)   # distill, eval, export, generate, lora, merge, prune, quantize, sft, train

The runners hold no logic of their own beyond wiring: the stage functions live in their packages
(``downsize.prune``, ``downsize.distill``, ``downsize.export``, ``downsize.generate``, ``downsize.eval``).
"""

from __future__ import annotations

from pathlib import Path

from downsize.pipeline import Artifact, StageContext, register_stage
from downsize.recipe import Recipe, Stage


def _ref(a: Artifact, ctx: StageContext) -> str:
    return str(a.path) if a.path else ctx.recipe.teacher


@register_stage("train")
def run_train(ctx: StageContext) -> Artifact:
    """Plain next-token cross entropy on the recipe's data (the no-distillation baseline)."""
    from downsize.eval.run import token_stream
    from downsize.data.packing import PackedDataset
    from downsize.models.refs import load_model
    from downsize.models.save import save_model_dir
    from downsize.train.loop import TrainConfig, lm_loss, train

    s = ctx.stage.settings
    src = ctx.input_model()
    model, tok = load_model(_ref(src, ctx))
    data = PackedDataset(token_stream(tok, ctx.data, "train"), s.seq_len, seed=ctx.recipe.seed)
    cfg = TrainConfig(steps=s.steps, batch_size=s.batch_size, grad_accum=s.grad_accum, lr=s.lr,
                      warmup_steps=s.warmup_steps, mixed_precision=s.mixed_precision, seed=ctx.recipe.seed,
                      checkpoint_every=s.checkpoint_every, progress=False)
    res = train(model, lm_loss, data, cfg, ctx.stage_dir / "work", resume=ctx.resume)
    out = save_model_dir(model, tok, ctx.stage_dir / "output", card={
        "stage": "train", "loss": "cross-entropy", "input": _ref(src, ctx), "data": ctx.data,
        "steps": res.steps, "tokens": res.tokens, "final_loss": res.final_loss})
    return Artifact("model", out, "", {"steps": res.steps, "tokens": res.tokens, "final_loss": res.final_loss,
                                       "wall_s": res.wall_s})


@register_stage("prune")
def run_prune(ctx: StageContext) -> Artifact:
    from downsize.prune import PruneConfig, prune_ref

    s = ctx.stage.settings
    cfg = PruneConfig(method=s.method, targets=dict(s.targets), sparsity=s.sparsity, nm=s.pattern,
                      calib_samples=s.calib_samples, calib_seq_len=s.seq_len, seed=ctx.recipe.seed)
    out = ctx.stage_dir / "output"
    report = prune_ref(_ref(ctx.input_model(), ctx), out, cfg, s.calib or ctx.recipe.data)
    return Artifact("model", out, "", {"params": report["params"], "wall_s": report["wall_s"]})


@register_stage("eval")
def run_eval(ctx: StageContext) -> Artifact:
    """Waterfall metrics of every model so far (or the listed ones) against the teacher."""
    from downsize.eval.compare import compare_models
    from downsize.eval.speed import measure_speed

    s = ctx.stage.settings
    names = s.models or [n for n, a in ctx.artifacts.items() if a.kind in ("model", "gguf")]
    models = {n: _ref(ctx.artifacts[n], ctx) for n in names}
    if "teacher" not in models:
        models = {"teacher": ctx.recipe.teacher, **models}
    rows = compare_models(models, teacher="teacher", data=ctx.data, split=s.split, seq_len=s.seq_len,
                          max_tokens=s.max_tokens)
    if s.speed:
        for n, ref in models.items():
            try:
                rows[n].update({k: v for k, v in measure_speed(ref).items() if k != "backend"})
            except RuntimeError as e:
                ctx.log(f"speed of {n}: {e}")
    metrics = {"models": rows}
    if s.samples:
        metrics["samples"] = _samples(models)
    return Artifact("metrics", None, "", metrics)


SAMPLE_PROMPTS = ("def read_config(path):\n    \"\"\"Read a configuration file and return a dict.\"\"\"\n",
                  "class Stack:\n    def __init__(self):\n")


def _samples(models: dict[str, str], max_new_tokens: int = 40) -> dict:
    """Greedy completions of fixed prompts by every model (GGUF through llama.cpp)."""
    from downsize.eval.run import sample_completion
    from downsize.models.refs import load_model, resolve_model

    out: dict[str, dict[str, str]] = {p: {} for p in SAMPLE_PROMPTS}
    for n, ref in models.items():
        if resolve_model(ref).is_gguf:
            from llama_cpp import Llama

            llm = Llama(model_path=str(resolve_model(ref).path), n_ctx=256, verbose=False)
            for p in SAMPLE_PROMPTS:
                r = llm.create_completion(p, max_tokens=max_new_tokens, temperature=0.0)
                out[p][n] = r["choices"][0]["text"]
            llm.close() if hasattr(llm, "close") else None
        else:
            model, tok = load_model(ref)
            for p in SAMPLE_PROMPTS:
                out[p][n] = sample_completion(model, tok, p, max_new_tokens)
    return out


def estimate_stage(recipe: Recipe, stage: Stage) -> str:
    """A rough cost line for `downsize plan` (from the teacher's config; no weights loaded)."""
    import json

    from downsize.models.refs import resolve_model

    s = stage.settings
    try:
        ref = resolve_model(recipe.teacher)
        cfg = json.loads((ref.path / "config.json").read_text()) if not ref.is_gguf else {}
    except Exception:  # plan must print even when the teacher is absent; validate reports that
        cfg = {}
    h, L, V, ff = cfg.get("hidden_size", 0), cfg.get("num_hidden_layers", 0), cfg.get("vocab_size", 0), cfg.get("intermediate_size", 0)
    params = L * (4 * h * h + 3 * h * ff) + 2 * V * h
    tokens = getattr(s, "steps", 0) * getattr(s, "batch_size", 0) * getattr(s, "grad_accum", 1) * getattr(s, "seq_len", 0)
    if stage.kind in ("train", "distill", "sft", "lora"):
        mult = 8 if stage.kind == "distill" else 6  # distill adds a teacher forward (2N) to 6N
        return f"~{tokens / 1e6:.2f}M tokens, ~{mult * params * tokens / 1e12:.1f} TFLOP, RAM ~{params * 16 / 2**30 + 0.5:.1f} GiB"
    if stage.kind == "prune":
        return f"{s.calib_samples} calibration sequences × {s.seq_len} tokens, teacher ~{params / 1e6:.1f}M params"
    if stage.kind in ("quantize", "export"):
        return f"streams ~{params * 2 / 2**20:.0f} MB of weights"
    if stage.kind == "eval":
        return f"{s.max_tokens} tokens per model" + (", speed in a child process" if s.speed else "")
    return "-"
