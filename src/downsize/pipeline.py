"""Run a recipe: one folder per stage, a manifest of input hashes, skip-if-unchanged and resume.

    $ downsize run recipes/quickstart.yaml --out runs/quickstart
    >>> run_recipe(load_recipe("recipes/quickstart.yaml"), "runs/quickstart")

Layout of a run directory (every path inside is relative, so the folder can be copied elsewhere)::

    manifest.json                 recipe, and per stage: input hash, status, output, metrics, wall time
    recipe.yaml                   the recipe as run (overrides applied)
    00-prune/output/              a Hugging Face model directory
    01-distill/output/ output.work/   checkpoints; an interrupted stage resumes from them
    03-quantize/model.gguf
    report.html, report.md        the side-by-side report

A stage is skipped when its input hash (its settings, the recipe's teacher/data/seed, and the
hashes of the stages it reads) equals the one recorded when it last finished. ``from_stage``
reruns that stage and every later one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import yaml

from downsize.errors import DownsizeError
from downsize.io import write_json_atomic, write_text_atomic
from downsize.recipe import GGUF_PRODUCING, MODEL_PRODUCING, Recipe, Stage

log = logging.getLogger("downsize.pipeline")
MANIFEST = "manifest.json"


@dataclass
class Artifact:
    """What a stage produced: a model directory, a GGUF file, or only metrics."""

    kind: str  # "model" | "gguf" | "data" | "metrics"
    path: Path | None
    hash: str
    metrics: dict = field(default_factory=dict)


@dataclass
class StageContext:
    recipe: Recipe
    stage: Stage
    run_dir: Path
    stage_dir: Path
    artifacts: dict[str, Artifact]  # by stage name, plus "teacher"
    resume: bool
    log: Callable[[str], None]

    def input_model(self) -> Artifact:
        """The artifact this stage reads: its `input`, else the latest model the run produced, else the teacher."""
        name = self.stage.settings.input
        if name:
            return self.artifacts[name]
        for a in reversed(list(self.artifacts.values())):
            if a.kind == "model":
                return a
        return self.artifacts["teacher"]

    def latest_gguf(self) -> Artifact | None:
        for a in reversed(list(self.artifacts.values())):
            if a.kind == "gguf":
                return a
        return None

    @property
    def output_dir(self) -> Path:
        return self.stage_dir / "output"

    @property
    def work_dir(self) -> Path:
        """Checkpoints of a training stage (the distill/sft convention: OUTPUT.work beside OUTPUT)."""
        return self.stage_dir / "output.work"

    @property
    def data(self) -> str:
        """The stage's data reference; a stage name stands for that stage's output (e.g. generated JSONL)."""
        ref = getattr(self.stage.settings, "data", None) or self.recipe.data
        art = self.artifacts.get(ref)
        return str(art.path) if art is not None and art.path is not None else ref


StageRunner = Callable[[StageContext], Artifact]
STAGE_RUNNERS: dict[str, StageRunner] = {}


def register_stage(kind: str):
    def deco(fn: StageRunner) -> StageRunner:
        if kind in STAGE_RUNNERS:
            raise ValueError(f"stage runner {kind!r} registered twice")
        STAGE_RUNNERS[kind] = fn
        return fn
    return deco


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
               log: Callable[[str], None] = log.info, only_plan: bool = False, overwrite: bool = False) -> dict:
    """Execute ``recipe`` into ``run_dir``; returns the manifest.

    ``run_dir`` must be new, empty or an earlier run folder (which is resumed) unless ``overwrite``.
    """
    import downsize.stages  # noqa: F401  (registers the stage runners)
    from downsize.io import KIND_RUN, check_output, mark_dir

    run_dir = Path(run_dir).resolve()
    check_output(run_dir, KIND_RUN, overwrite)
    run_dir.mkdir(parents=True, exist_ok=True)
    mark_dir(run_dir, KIND_RUN)
    if recipe.threads:
        import torch

        torch.set_num_threads(recipe.threads)
    names = [s.name for s in recipe.stages]
    if from_stage is not None and from_stage not in names:
        raise DownsizeError(f"--from {from_stage!r} is not a stage of {recipe.name}", hint=f"choose one of {', '.join(names)}")
    old = load_manifest(run_dir)
    old_stages = {s["name"]: s for s in old.get("stages", [])}
    write_text_atomic(run_dir / "recipe.yaml", yaml.safe_dump(_recipe_as_yaml(recipe), sort_keys=False))
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
            write_json_atomic(sdir / "config.json", {"kind": stage.kind, **stage.settings.model_dump(mode="json")})
            resume = (sdir / "output.work").exists()
            log(f"[{stage.index}] {stage.name}: {'resuming' if resume else 'running'} {stage.kind}")
            entry["status"] = "running"
            _write_manifest(run_dir, manifest, entry)
            t0 = time.time()
            ctx = StageContext(recipe, stage, run_dir, sdir, artifacts, resume, log)
            art = STAGE_RUNNERS[stage.kind](ctx)
            art.hash = h
            entry.update(status="done", wall_s=round(time.time() - t0, 1), output_kind=art.kind,
                         output=str(art.path.relative_to(run_dir)) if art.path else None, metrics=art.metrics)
            write_json_atomic(sdir / "metrics.json", art.metrics)
            manifest["stages"].append(entry)
        _write_manifest(run_dir, manifest, None)
        artifacts[stage.name] = art
    manifest["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    _write_manifest(run_dir, manifest, None)
    from downsize.eval.report import write_report

    write_report(run_dir, recipe, manifest)
    return manifest


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


def plan_recipe(recipe: Recipe) -> list[dict]:
    """What each stage reads and writes, and a rough cost, without loading weights."""
    from downsize.stages import estimate_stage

    rows = []
    produced = {"teacher": recipe.teacher}
    latest = "teacher"
    for st in recipe.stages:
        src = st.settings.input or latest
        out = f"{stage_dir_name(st)}/" + ("output/" if st.kind in MODEL_PRODUCING else "model.gguf" if st.kind in GGUF_PRODUCING else "metrics.json")
        rows.append({"stage": f"{st.index}: {st.name}", "kind": st.kind, "reads": src if st.kind != "eval" else "all models",
                     "writes": out, "cost": estimate_stage(recipe, st)})
        produced[st.name] = out
        if st.kind in MODEL_PRODUCING:
            latest = st.name
    return rows


GENERAL_PIPELINE = [
    ("prune", "shrink the teacher's width/depth with calibration data (or N:M/unstructured for research)"),
    ("distill", "recover quality: logit KD from the teacher (online, offline top-k cache, on-policy GKD)"),
    ("generate / sft / lora", "text KD: the teacher writes data (tool-calling traces); the student learns it"),
    ("merge", "fold LoRA adapters into full weights"),
    ("quantize", "GGUF K-quants with an importance matrix from calibration data"),
    ("export", "an Ollama Modelfile with the converted chat template; `ollama create`"),
    ("eval", "perplexity, KL and top-1 agreement vs the teacher, speed and RAM, tool use; report.html"),
]
