"""Run a recipe: one folder per stage, a manifest of input hashes, skip-if-unchanged and resume.

    $ downsize run recipes/quickstart.yaml --out runs/quickstart
    >>> from pathlib import Path
    >>> from downsize.recipe import parse_recipe
    >>> recipe = parse_recipe({"name": "demo", "teacher": "zoo:coder-teacher-qwen", "data": "zoo:stdlib", "stages": [
    ...     {"prune": {"method": "width", "targets": {"ffn": 256}, "calib_samples": 4, "seq_len": 32}}]})
    >>> manifest = run_recipe(recipe, "runs/q", progress=False)
    >>> [(s["dir"], s["status"], s["metrics"]["params"]["after"]) for s in manifest["stages"]]
    [('00-prune', 'done', 2625792)]
    >>> again = run_recipe(recipe, "runs/q", progress=False)      # same input hash: the stage is skipped
    >>> again["stages"][0]["wall_s"] == manifest["stages"][0]["wall_s"]
    True
    >>> sorted(p.name for p in Path("runs/q").iterdir())
    ['.downsize.json', '00-prune', 'manifest.json', 'recipe.yaml', 'report.html', 'report.md']

Layout of a run directory (every path inside is relative, so the folder can be copied elsewhere)::

    manifest.json                 recipe, and per stage: input hash, status, output, metrics, wall time
    recipe.yaml                   the recipe as run (overrides applied)
    00-prune/output/              a Hugging Face model directory
    01-distill/output/ output.work/   checkpoints; an interrupted stage resumes from them
    03-quantize/model.gguf
    report.html, report.md        the side-by-side report

While a stage runs, its long steps draw progress bars on stderr when it is a terminal (``progress=False``
turns them off; see ``downsize.console.progress``); each finished stage logs one summary line:

    >>> stage_summary("prune", {"params": {"before": 2_000_000, "after": 1_000_000, "ratio": 0.5}}, 12.3)
    'done in 12 s: params 2M → 1M (×2.0 smaller)'

A stage is skipped when its input hash (its settings, the recipe's teacher/data/seed, and the
hashes of the stages it reads) equals the one recorded when it last finished. ``from_stage``
reruns that stage and every later one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Callable

import yaml

from downsize.errors import DownsizeError
from downsize.io import write_json_atomic, write_text_atomic
from downsize.recipe import Recipe, Stage
from downsize.stages import STAGES, Artifact, StageContext

log = logging.getLogger("downsize.pipeline")
MANIFEST = "manifest.json"
RECIPE_AS_RUN = "recipe.yaml"
STAGE_CONFIG = "config.json"
STAGE_METRICS = "metrics.json"


def ref_hash(ref: str) -> str:
    """A cheap, content-based identity of a model or data reference (no weights are read in full)."""
    from downsize.data.refs import resolve_data
    from downsize.models.refs import resolve_model

    h = hashlib.sha256(ref.encode())
    try:
        m = resolve_model(ref)
        files = [m.path] if m.path.is_file() else sorted(p for p in m.path.iterdir() if p.is_file())
        for f in files:
            st = f.stat()
            h.update(f"{f.name}:{st.st_size}".encode())
            with open(f, "rb") as fh:
                h.update(fh.read(1 << 16))  # config, tokenizer, safetensors header and first weights
        return h.hexdigest()[:16]
    except DownsizeError:
        pass
    d = resolve_data(ref)
    if d.kind == "stdlib":
        from downsize.data.stdlib import StdlibCorpus

        h.update(StdlibCorpus.local().fingerprint.encode())
    else:
        for rec in d.records("all"):
            h.update(json.dumps(rec, sort_keys=True).encode())
    return h.hexdigest()[:16]


def _stage_hash(recipe: Recipe, stage: Stage, inputs: list[Artifact], data_hash: str) -> str:
    h = hashlib.sha256()
    h.update(json.dumps({"kind": stage.kind, "settings": stage.settings.model_dump(mode="json"),
                         "teacher": recipe.teacher, "seed": recipe.seed}, sort_keys=True).encode())
    h.update(data_hash.encode())
    for a in inputs:
        h.update(a.hash.encode())
    return h.hexdigest()[:16]


def _stage_inputs(stage: Stage, artifacts: dict[str, Artifact]) -> list[Artifact]:
    """Every earlier artifact a stage may read: its input (or latest model), the teacher, and for eval all of them."""
    if stage.kind == "eval":
        return list(artifacts.values())
    s = stage.settings
    chosen = [artifacts[s.input]] if s.input else [a for a in artifacts.values() if a.kind in ("model", "gguf", "data")][-1:]
    return chosen + [artifacts["teacher"]]


def stage_dir_name(stage: Stage) -> str:
    return f"{stage.index:02d}-{stage.name}"


def load_manifest(run_dir: Path) -> dict:
    p = run_dir / MANIFEST
    return json.loads(p.read_text()) if p.exists() else {}


def run_recipe(recipe: Recipe, run_dir: str | Path, from_stage: str | None = None,
               log: Callable[[str], None] = log.info, progress: bool = True, overwrite: bool = False) -> dict:
    """Execute ``recipe`` into ``run_dir``; returns the manifest.

    ``run_dir`` must be new, empty or an earlier run folder (which is resumed) unless ``overwrite``.
    """
    from downsize.io import KIND_RUN, check_output, mark_dir

    run_dir = Path(run_dir).resolve()
    check_output(run_dir, KIND_RUN, overwrite)
    run_dir.mkdir(parents=True, exist_ok=True)
    mark_dir(run_dir, KIND_RUN)
    from downsize.hardware import set_threads

    set_threads(recipe.threads)
    names = [s.name for s in recipe.stages]
    if from_stage is not None and from_stage not in names:
        raise DownsizeError(f"--from {from_stage!r} is not a stage of {recipe.name}", hint=f"choose one of {', '.join(names)}")
    old = load_manifest(run_dir)
    old_stages = {s["name"]: s for s in old.get("stages", [])}
    write_text_atomic(run_dir / RECIPE_AS_RUN, yaml.safe_dump(_recipe_as_yaml(recipe), sort_keys=False))
    manifest = {"recipe": recipe.name, "teacher": recipe.teacher, "data": recipe.data, "seed": recipe.seed,
                "stages": [], "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
    data_hash = ref_hash(recipe.data)
    artifacts: dict[str, Artifact] = {"teacher": Artifact("model", None, ref_hash(recipe.teacher))}
    forced = False
    for stage in recipe.stages:
        forced = forced or stage.name == from_stage
        sdir = run_dir / stage_dir_name(stage)
        inputs = _stage_inputs(stage, artifacts)
        h = _stage_hash(recipe, stage, inputs, data_hash)
        prev = old_stages.get(stage.name)
        entry = {"index": stage.index, "name": stage.name, "kind": stage.kind, "dir": sdir.name, "input_hash": h}
        if not forced and prev and prev.get("status") == "done" and prev.get("input_hash") == h and _output_exists(run_dir, prev):
            log(f"[{stage.index}] {stage.name}: unchanged, skipped")
            art = Artifact(prev["output_kind"], run_dir / prev["output"] if prev.get("output") else None, h, prev.get("metrics", {}))
            manifest["stages"].append({**prev, "skipped": True})
        else:
            if sdir.exists() and prev and prev.get("input_hash") != h:
                import shutil

                shutil.rmtree(sdir)  # inputs changed: stale checkpoints must not be resumed
            sdir.mkdir(parents=True, exist_ok=True)
            write_json_atomic(sdir / STAGE_CONFIG, {"kind": stage.kind, **stage.settings.model_dump(mode="json")})
            spec = STAGES[stage.kind]
            out = sdir / spec.output_name(stage.settings) if spec.output_name(stage.settings) else sdir
            ctx = StageContext(out=out, teacher=recipe.teacher, data=recipe.data, seed=recipe.seed,
                               artifacts=artifacts, input_name=stage.settings.input, progress=progress, log=log,
                               stage_name=stage.name, stage_dir=sdir, run_dir=run_dir, recipe=recipe)
            ctx.resume = ctx.work_dir.exists()
            log(f"[{stage.index}] {stage.name}: {'resuming' if ctx.resume else 'running'} {stage.kind}")
            entry["status"] = "running"
            _write_manifest(run_dir, manifest, entry)
            t0 = time.time()
            from downsize.console import progress_scope

            with progress_scope(progress):
                art = spec.run(ctx, stage.settings)
            log(f"[{stage.index}] {stage.name}: {stage_summary(stage.kind, art.metrics, time.time() - t0)}")
            art.hash = h
            entry.update(status="done", wall_s=round(time.time() - t0, 1), output_kind=art.kind,
                         output=str(art.path.relative_to(run_dir)) if art.path else None, metrics=art.metrics)
            write_json_atomic(sdir / STAGE_METRICS, art.metrics)
            manifest["stages"].append(entry)
        _write_manifest(run_dir, manifest, None)
        artifacts[stage.name] = art
    manifest["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    _write_manifest(run_dir, manifest, None)
    from downsize.eval.report import write_report

    write_report(run_dir, recipe, manifest)
    return manifest


def _num(x) -> str:
    from downsize.console import fmt_sig

    return f"{int(x):,}" if isinstance(x, int) or float(x).is_integer() else fmt_sig(float(x), 4)


def stage_summary(kind: str, metrics: dict, wall_s: float) -> str:
    """The one line a finished stage logs: its wall time and its headline metrics."""
    from downsize.console import fmt_duration, fmt_mib, fmt_params, fmt_ratio, fmt_sig

    m = metrics or {}
    bits: list[str] = []
    if kind == "prune" and isinstance(m.get("params"), dict):
        p = m["params"]
        bits.append(f"params {fmt_params(p['before'])} → {fmt_params(p['after'])} "
                    f"({fmt_ratio(p['after'], p['before'], smaller_is_better=True)})")
    elif kind in ("quantize", "export") and m.get("size_mb") is not None:
        bits.append(f"{m.get('quant')} {fmt_mib(m['size_mb'])}, {fmt_sig(m['bits_per_weight'], 3)} bits/weight"
                    + (", importance matrix" if m.get("imatrix") else ""))
    elif kind == "export" and m.get("ollama_command"):
        bits.append(f"{m['modelfile']}" + ("" if m.get("ollama_created") else f"; next: {m['ollama_command']}"))
    elif kind == "eval" and isinstance(m.get("models"), dict):
        rows = m["models"]
        bits.append(f"{len(rows)} models: " + ", ".join(
            f"{n} ppl {fmt_sig(r['perplexity'], 4)}" + (f" KL {fmt_sig(r['kl_to_teacher'], 3)}"
                                                       if r.get("kl_to_teacher") else "")
            for n, r in rows.items() if r.get("perplexity") is not None))
    else:  # training stages (their card's final metrics), generate, merge: the scalar numbers
        keys = [k for k, v in m.items() if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "wall_s"]
        bits += [f"{k} {_num(m[k])}" for k in keys[:5]]
    return f"done in {fmt_duration(wall_s)}" + (": " + "; ".join(bits) if bits else "")


def _output_exists(run_dir: Path, entry: dict) -> bool:
    return entry.get("output") is None or (run_dir / entry["output"]).exists()


def _write_manifest(run_dir: Path, manifest: dict, running: dict | None) -> None:
    m = dict(manifest)
    if running:
        m["stages"] = manifest["stages"] + [running]
    write_json_atomic(run_dir / MANIFEST, m)


def _recipe_as_yaml(recipe: Recipe) -> dict:
    return {"name": recipe.name, "description": recipe.description, "teacher": recipe.teacher, "data": recipe.data,
            "seed": recipe.seed, "threads": recipe.threads,
            "stages": [{s.kind: s.settings.model_dump(mode="json", exclude_none=True)} for s in recipe.stages]}


def plan_recipe(recipe: Recipe, device=None) -> list[dict]:
    """What each stage reads and writes, a rough cost and its peak memory on ``device`` (a
    ``downsize.models.memory.Device``, "cuda:80x2", or what this machine has), from the configs alone: no
    weights are loaded, and Hub ids need only their config.json."""
    from downsize.models.arch import config_params
    from downsize.models.memory import Device, plan_memory

    params = config_params(recipe.teacher)
    try:
        memory = {e.stage: e for e in plan_memory(recipe, device or Device.detect())}
        memory_error = None
    except DownsizeError as e:  # plan prints what it can; a config that cannot be read is reported, not raised
        memory, memory_error = {}, e.message
    rows = []
    latest_model, latest_gguf = "teacher", None
    for st in recipe.stages:
        spec = STAGES[st.kind]
        s = st.settings
        if st.kind == "eval":
            reads = ", ".join(s.models) if s.models else "every model so far"
        elif st.kind == "export" and s.input is None and s.quant is None and latest_gguf:
            reads = latest_gguf  # the run's latest GGUF, as run_export does
        else:
            reads = s.input or latest_model
        name = spec.output_name(s)
        rows.append({"stage": f"{st.index}: {st.name}", "kind": st.kind, "reads": reads,
                     "writes": f"{stage_dir_name(st)}/{name}" if name else f"{stage_dir_name(st)}/",
                     "cost": spec.estimate(s, params) if spec.estimate else "-",
                     "memory": _memory_line(memory.get(st.name), memory_error), "memory_error": memory_error})
        if spec.produces == "model":
            latest_model = st.name
        if spec.produces == "gguf":
            latest_gguf = st.name
    return rows


def _memory_line(est, error: str | None) -> str:
    if est is None:
        return "unknown (see below)" if error else "-"
    return est.line() + (f"; try: {est.suggestions[0]}" if est.suggestions else "")


GENERAL_PIPELINE = [
    ("prune", "shrink the teacher's width/depth with calibration data (or N:M/unstructured for research)"),
    ("distill", "recover quality: logit KD from the teacher (online, offline top-k cache, on-policy GKD)"),
    ("generate / sft / lora", "text KD: the teacher writes data (tool-calling traces); the student learns it"),
    ("merge", "fold LoRA adapters into full weights"),
    ("quantize", "GGUF K-quants with an importance matrix from calibration data"),
    ("export", "an Ollama Modelfile with the converted chat template; `ollama create`"),
    ("eval", "perplexity, KL and top-1 agreement vs the teacher, speed and RAM, tool use; report.html"),
]
