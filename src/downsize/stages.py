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
    from downsize.distill.train import save_model
    from downsize.train.loop import TrainConfig, lm_loss, train

    s = ctx.stage.settings
    src = ctx.input_model()
    model, tok = load_model(_ref(src, ctx))
    data = PackedDataset(token_stream(tok, ctx.data, "train"), s.seq_len, seed=ctx.recipe.seed)
    cfg = TrainConfig(steps=s.steps, batch_size=s.batch_size, grad_accum=s.grad_accum, lr=s.lr,
                      warmup_steps=s.warmup_steps, mixed_precision=s.mixed_precision, seed=ctx.recipe.seed,
                      checkpoint_every=s.checkpoint_every, progress=False)
    res = train(model, lm_loss, data, cfg, ctx.work_dir, resume=ctx.resume)
    out = save_model(model, tok, ctx.output_dir, card={
        "name": ctx.stage.name, "stage": "train", "loss": "cross-entropy", "input": _ref(src, ctx), "data": ctx.data,
        "steps": res.steps, "tokens": res.tokens, "final_metrics": {"train_loss": res.final_loss}})
    return Artifact("model", out, "", {"steps": res.steps, "tokens": res.tokens, "final_loss": res.final_loss,
                                       "wall_s": res.wall_s})


def _train_config(s, seed: int):
    from downsize.train.loop import TrainConfig

    return TrainConfig(steps=s.steps, batch_size=s.batch_size, grad_accum=s.grad_accum, lr=s.lr,
                       warmup_steps=s.warmup_steps, mixed_precision=s.mixed_precision, seed=seed,
                       checkpoint_every=s.checkpoint_every, progress=False)


def _lora(s):
    from downsize.train.loop import LoraSpec

    if s.lora is None:
        return None
    targets = {"target_modules": tuple(s.lora.target_modules)} if s.lora.target_modules else {}
    return LoraSpec(r=s.lora.r, alpha=s.lora.alpha, dropout=s.lora.dropout,
                    quantize_base=None if s.lora.quantize_base == "none" else "nf4", **targets)


def _card_metrics(out: Path) -> dict:
    import json

    card = out / "downsize_card.json"
    return json.loads(card.read_text()).get("final_metrics", {}) if card.exists() else {}


@register_stage("distill")
def run_distill(ctx: StageContext) -> Artifact:
    """Logit KD from the teacher into the input model (or the stage's `student`)."""
    from downsize.distill import DistillConfig, LossSpec, OnPolicy, distill

    s = ctx.stage.settings
    student = s.student if s.student is not None else _ref(ctx.input_model(), ctx)
    if isinstance(student, str) and student in ctx.artifacts:
        student = _ref(ctx.artifacts[student], ctx)
    elif isinstance(student, dict):
        from downsize.distill import StudentSpec

        student = StudentSpec(overrides={k: v for k, v in student.items() if k != "init"}, seed=ctx.recipe.seed)
    cache = None
    teacher = s.teacher or ctx.recipe.teacher
    loss = LossSpec(s.loss, temperature=s.temperature, kd_ratio=s.kd_ratio, beta=s.beta, alpha=s.alpha)
    if s.teacher_mode == "offline":
        from downsize.distill import cache_teacher

        cache = str(ctx.stage_dir / "teacher-cache")
        cache_teacher(teacher, ctx.data, cache, k=s.top_k, seq_len=s.seq_len,
                          windows=s.steps * s.batch_size * s.grad_accum, temperature=s.temperature, device=s.teacher_device)
    cfg = DistillConfig(train=_train_config(s, ctx.recipe.seed), loss=loss, seq_len=s.seq_len, cache=cache,
                        on_policy=OnPolicy(lmbda=s.on_policy) if s.on_policy > 0 else None,
                        vocab_align=s.vocab_align, lora=_lora(s), val_tokens=s.val_tokens, keep_work=s.keep_work,
                        teacher_device=s.teacher_device)
    out = distill(teacher, student, ctx.data, cfg, ctx.output_dir, resume=ctx.resume)
    return Artifact("model", out, "", _card_metrics(out))


@register_stage("sft")
@register_stage("lora")
def run_sft(ctx: StageContext) -> Artifact:
    """Supervised fine-tuning on chat JSONL (assistant tokens only), full or LoRA; `lora` is SFT with adapters."""
    from downsize.distill import SFTConfig, sft

    s = ctx.stage.settings
    base = s.student if s.student is not None else _ref(ctx.input_model(), ctx)
    if base in ctx.artifacts:
        base = _ref(ctx.artifacts[base], ctx)
    lora = _lora(s)
    if ctx.stage.kind == "lora" and lora is None:
        from downsize.train.loop import LoraSpec

        lora = LoraSpec()
    cfg = SFTConfig(train=_train_config(s, ctx.recipe.seed), max_seq_len=s.seq_len, lora=lora, logprob_kd=s.logprob_kd)
    out = sft(base, ctx.data, cfg, ctx.output_dir, resume=ctx.resume)
    return Artifact("model", out, "", _card_metrics(out))


@register_stage("merge")
def run_merge(ctx: StageContext) -> Artifact:
    """Fold LoRA adapters into full weights. distill/sft already save merged weights, so an input
    without adapter files passes through unchanged (and the stage says so)."""
    src = ctx.input_model()
    path = src.path
    if path is not None and (path / "adapter_config.json").exists():
        from peft import AutoPeftModelForCausalLM

        from downsize.distill.train import save_model
        from downsize.models.refs import load_tokenizer

        model = AutoPeftModelForCausalLM.from_pretrained(str(path)).merge_and_unload()
        out = save_model(model, load_tokenizer(str(path)), ctx.output_dir, {"name": ctx.stage.name, "stage": "merge",
                                                                             "adapter": str(path)})
        return Artifact("model", out, "", {"merged": True})
    ctx.log(f"[{ctx.stage.index}] {ctx.stage.name}: {src.path} has no LoRA adapter files; it is already full weights")
    return Artifact("model", path, "", {"merged": False, "note": "input already held merged weights"})


@register_stage("generate")
def run_generate(ctx: StageContext) -> Artifact:
    """The teacher writes training data (chat JSONL); resumable: a rerun skips ids already written."""
    from downsize.generate.backends import GenParams
    from downsize.generate.run import GenerateConfig, generate

    s = ctx.stage.settings
    out = ctx.stage_dir / "data.jsonl"
    cfg = GenerateConfig(teacher=s.teacher or ctx.recipe.teacher, out=str(out), prompts=s.prompts,
                         codebase=s.codebase, n_codebase=s.n, seed=ctx.recipe.seed, in_flight=s.concurrency,
                         tools=s.tools, params=GenParams(max_tokens=s.max_new_tokens, top_logprobs=s.top_logprobs))
    summary = generate(cfg)
    return Artifact("data", out, "", {k: v for k, v in summary.items() if isinstance(v, (int, float, str, dict))})


@register_stage("quantize")
def run_quantize(ctx: StageContext) -> Artifact:
    """GGUF of the input model at `quant`, with an importance matrix from the calibration data."""
    from downsize.export.gguf import export_gguf

    s = ctx.stage.settings
    src = _ref(ctx.input_model(), ctx)
    imatrix = None
    if s.imatrix and s.quant not in ("F32", "F16", "BF16", "Q8_0"):
        from downsize.export.imatrix import ImatrixConfig, compute_imatrix, write_imatrix

        imatrix = ctx.stage_dir / "imatrix.gguf"
        if not imatrix.exists():
            n = max(1, s.calib_tokens // 256)
            write_imatrix(compute_imatrix(src, s.calib or ctx.recipe.data, ImatrixConfig(n_samples=n, seq_len=256,
                                                                                          seed=ctx.recipe.seed)), imatrix)
    out = ctx.stage_dir / f"model-{s.quant.lower()}.gguf"
    res = export_gguf(src, out, s.quant, imatrix=imatrix, rescale=s.rescale)
    size = out.stat().st_size
    return Artifact("gguf", out, "", {"gguf": str(out.relative_to(ctx.run_dir)), "quant": s.quant, "size_mb": size / 2**20,
                                      "bits_per_weight": 8 * size / max(1, res.n_params), "imatrix": imatrix is not None,
                                      "rescaled": res.rescale is not None})


@register_stage("export")
def run_export(ctx: StageContext) -> Artifact:
    """A GGUF plus an Ollama Modelfile (TEMPLATE converted from the chat template); `ollama create` when installed.

    Reads the latest GGUF of the run (or `input`); with none, converts the input model at `quant`.
    The GGUF is hard-linked into this stage's folder so the Modelfile's FROM stays relative and
    the run directory can be copied elsewhere.
    """
    import os

    from downsize.export.ollama import convert_gguf, export_ollama

    s = ctx.stage.settings
    name = s.model_name or ctx.recipe.name
    src = ctx.artifacts[s.input] if s.input else (ctx.latest_gguf() if s.quant is None else None)
    if src is not None and src.kind == "gguf":
        local = ctx.stage_dir / f"{name.replace(':', '-').replace('/', '-')}.gguf"
        if not local.exists():
            try:
                os.link(src.path, local)
            except OSError:
                import shutil

                shutil.copy2(src.path, local)
        info = convert_gguf(local, name, ctx.stage_dir, create=s.format == "ollama")
    else:
        info = export_ollama(_ref(ctx.input_model(), ctx), name, ctx.stage_dir, s.quant or "Q4_K_M",
                             create=s.format == "ollama")
    gguf, modelfile = Path(info["gguf"]), Path(info["modelfile"]).relative_to(ctx.run_dir)
    return Artifact("gguf", gguf, "", {"gguf": str(gguf.relative_to(ctx.run_dir)), "modelfile": str(modelfile),
                                       "template_style": info["template_style"], "stops": info["stops"],
                                       "ollama_name": name, "ollama_command": f"ollama create {name} -f {modelfile}",
                                       "ollama_created": info["created"]})


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
    names, seen = s.models, set()
    if not names:  # every model of the run once (an export re-uses the quantize stage's GGUF, a merge may pass through)
        names = []
        for n, a in ctx.artifacts.items():
            key = (a.path.stat().st_dev, a.path.stat().st_ino) if a.path and a.path.is_file() else (a.path or n)
            if a.kind in ("model", "gguf") and key not in seen:
                seen.add(key)
                names.append(n)
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
    if s.tool_tasks:
        metrics["tools"] = _tool_eval(ctx, models)
    return Artifact("metrics", None, "", metrics)


def _tool_eval(ctx: StageContext, models: dict[str, str]) -> dict[str, dict]:
    """eval-tools over the same models; "teacher" is the generate stage's teacher (the model that wrote the
    traces, e.g. an Ollama/vLLM endpoint) when the run has one."""
    from downsize.errors import DownsizeError
    from downsize.eval.tools import compare, make_task_suite

    s = ctx.stage.settings
    gens = [st for st in ctx.recipe.stages if st.kind == "generate"]
    codebase = s.codebase or next((g.settings.codebase for g in gens if g.settings.codebase), None)
    if codebase is None:
        raise DownsizeError(f"stage {ctx.stage.name}: tool_tasks needs the repository the questions are about",
                            hint="set eval.codebase, or give the run a generate stage with a codebase")
    tasks = s.tool_tasks
    if tasks == "auto":
        traces = [ctx.artifacts[g.name].path for g in gens if g.name in ctx.artifacts]
        tasks = ctx.stage_dir / "tool_tasks.jsonl"
        n = make_task_suite(codebase, tasks, n=s.tool_suite, n_negative=max(1, s.tool_suite // 4),
                            exclude=traces[0] if traces else None)
        ctx.log(f"[{ctx.stage.index}] {ctx.stage.name}: {n} tool-use tasks from {codebase} (disjoint from the traces)")
    refs = dict(models)
    if gens and "teacher" in refs:
        refs["teacher"] = gens[0].settings.teacher or ctx.recipe.teacher
    rows = compare(list(refs.values()), tasks, codebase, s.tool_max_turns, s.tool_max_tokens)
    return {n: {k: v for k, v in r.items() if k != "rows"} for n, r in zip(refs, rows)}


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
        return (f"{s.max_tokens} tokens per model" + (", speed in a child process" if s.speed else "")
                + (f", tool use on {s.tool_tasks if s.tool_tasks != 'auto' else f'{s.tool_suite} codebase questions'}"
                   if s.tool_tasks else ""))
    return "-"
