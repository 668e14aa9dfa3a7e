"""Recipes: one YAML file is one pipeline, parsed into frozen typed configs.

    $ downsize validate recipes/quickstart.yaml stages.1.distill.steps=50
    >>> recipe = load_recipe("recipes/quickstart.yaml", overrides=["stages.1.distill.steps=50"])
    >>> [s.kind for s in recipe.stages]        # ['prune', 'distill', 'train', 'quantize', 'export', 'eval']

A recipe names the teacher, the data and an ordered list of stages, each a one-key mapping
``{kind: settings}``. Validation never loads weights and reports every error at once, each
with its path in the file: ``stages[2].distill.loss: unknown 'fkll'; choose one of fkl, ...``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from downsize.errors import DownsizeError

LOSSES = ("fkl", "rkl", "jsd", "skl", "srkl", "tvd")
PRUNE_METHODS = ("depth", "width", "magnitude", "wanda", "sparsegpt", "lowrank")
QUANT_TYPES = ("F32", "F16", "BF16", "Q8_0", "Q4_0", "Q2_K", "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_K_S", "Q4_K_M",
               "Q5_K_S", "Q5_K_M", "Q6_K")


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: Optional[str] = Field(None, description="stage name used by later stages' `input`; default: the kind")
    input: Optional[str] = Field(None, description="the stage (or 'teacher') whose model this stage reads; default: the latest model")


class TrainSettings(_Settings):
    steps: int = Field(100, ge=1)
    batch_size: int = Field(8, ge=1)
    grad_accum: int = Field(1, ge=1)
    seq_len: int = Field(256, ge=8)
    lr: float = Field(1e-3, gt=0)
    warmup_steps: int = Field(10, ge=0)
    mixed_precision: Literal["bf16", "no"] = "bf16"
    checkpoint_every: int = Field(50, ge=0)
    data: Optional[str] = None


class LoraSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    r: int = Field(16, ge=1)
    alpha: int = Field(32, ge=1)
    dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: Optional[list[str]] = None
    quantize_base: Literal["none", "nf4", "4bit"] = "none"  # QLoRA (4-bit NF4 base, CUDA) when not none; 4bit = nf4


class DistillSettings(TrainSettings):
    teacher: Optional[str] = None  # default: the recipe's teacher
    student: Optional[Union[str, dict[str, Any]]] = None  # default: the input model; or {init: random, ...overrides}
    loss: Literal[LOSSES] = "fkl"  # type: ignore[valid-type]
    temperature: float = Field(1.0, gt=0)
    kd_ratio: float = Field(1.0, ge=0, le=1)
    beta: float = Field(0.5, ge=0, le=1)  # generalized JSD
    alpha: float = Field(0.1, ge=0, le=1)  # skew KL
    teacher_mode: Literal["online", "offline"] = "online"
    top_k: int = Field(64, ge=1)
    on_policy: float = Field(0.0, ge=0, le=1)  # lambda of GKD
    vocab_align: Literal["auto", "off"] = "auto"
    lora: Optional[LoraSettings] = None
    val_tokens: int = Field(32768, ge=0, description="closing validation pass on zoo:stdlib's validation split (tokens; 0 = off)")
    teacher_device: str = Field("auto", description="where the teacher runs (models.placement): auto, cpu, cuda, cuda:N, other-gpu, shard, offload")
    keep_work: bool = Field(False, description="keep the run's .work/checkpoints after a successful save (default: removed)")


class SftSettings(TrainSettings):
    data: str = Field(..., description="chat JSONL ({'messages': [...]}) or text, or the name of a generate stage")
    student: Optional[str] = None  # the model to fine-tune (a reference or stage name); default: the input model
    lora: Optional[LoraSettings] = None
    logprob_kd: float = Field(0.0, ge=0, le=1)  # weight of KL to the teacher's stored top-k (generate.top_logprobs)


class PruneSettings(_Settings):
    method: Literal[PRUNE_METHODS] = "width"  # type: ignore[valid-type]
    targets: dict[str, Union[int, float, str]] = Field(default_factory=dict)  # ffn=, heads=, hidden=, layers=, params=
    sparsity: Optional[float] = Field(None, gt=0, lt=1)
    pattern: Optional[str] = Field(None, pattern=r"^\d+:\d+$")
    calib: Optional[str] = None  # default: the recipe's data
    calib_samples: int = Field(32, ge=1)
    seq_len: int = Field(256, ge=8)


class GenerateSettings(_Settings):
    teacher: Optional[str] = None
    prompts: Optional[str] = None
    codebase: Optional[str] = None
    tools: bool = False
    n: int = Field(100, ge=1)
    max_new_tokens: int = Field(256, ge=1)
    concurrency: int = Field(4, ge=1)
    top_logprobs: int = Field(0, ge=0, le=20)  # store the teacher's top-k per token: sft.logprob_kd can then use it
    seed: int = 0


class MergeSettings(_Settings):
    pass


class QuantizeSettings(_Settings):
    quant: Literal[QUANT_TYPES] = "Q4_K_M"  # type: ignore[valid-type]
    imatrix: bool = True
    rescale: bool = True  # undo the shrinkage of llama.cpp's block fits (downsize.export.rescale)
    calib: Optional[str] = None
    calib_tokens: int = Field(16384, ge=256)


class ExportSettings(_Settings):
    format: Literal["ollama", "gguf"] = "ollama"
    model_name: Optional[str] = None  # the Ollama model name; default: the recipe's name
    quant: Optional[Literal[QUANT_TYPES]] = None  # type: ignore[valid-type]


class EvalSettings(_Settings):
    models: Optional[list[str]] = None  # stage names and 'teacher'; default: every model the run produced
    data: Optional[str] = None
    split: Optional[str] = None
    max_tokens: int = Field(32768, ge=256)
    seq_len: int = Field(256, ge=8)
    speed: bool = True
    samples: bool = True
    # Tool use (eval-tools) of the same models: a JSONL suite, or "auto" for questions made from `codebase`
    # with answers computed from it, leaving out the ids a generate stage of this run trained on.
    tool_tasks: Optional[str] = None
    codebase: Optional[str] = None  # default: the codebase of the run's generate stage
    tool_suite: int = Field(20, ge=1)  # codebase questions in an "auto" suite (plus a quarter as many negatives)
    tool_max_turns: int = Field(4, ge=1)
    tool_max_tokens: int = Field(256, ge=8)


STAGE_SETTINGS: dict[str, type[_Settings]] = {
    "prune": PruneSettings, "distill": DistillSettings, "train": TrainSettings, "sft": SftSettings,
    "lora": SftSettings, "generate": GenerateSettings, "merge": MergeSettings, "quantize": QuantizeSettings,
    "export": ExportSettings, "eval": EvalSettings,
}
MODEL_PRODUCING = {"prune", "distill", "train", "sft", "lora", "merge"}
GGUF_PRODUCING = {"quantize", "export"}


class Stage(BaseModel):
    model_config = ConfigDict(frozen=True)
    index: int
    kind: str
    settings: _Settings

    @property
    def name(self) -> str:
        return self.settings.name or self.kind


class Recipe(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(..., pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    description: str = ""
    teacher: str
    data: str = "zoo:stdlib"
    seed: int = 0
    threads: Optional[int] = None
    stages: list[Stage]
    source: Optional[str] = None

    @field_validator("stages")
    @classmethod
    def _non_empty(cls, v):
        if not v:
            raise ValueError("a recipe needs at least one stage")
        return v


class RecipeError(DownsizeError):
    def __init__(self, source: str, errors: list[str]):
        self.errors = errors
        super().__init__(f"{source}: {len(errors)} error(s)\n" + "\n".join(f"  {e}" for e in errors),
                         hint="fix each line above (paths point into the YAML); `downsize validate` re-checks without loading weights")


def _loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _message(err: dict) -> str:
    if err["type"] == "literal_error":
        expected = [e.strip().strip("'") for e in err["ctx"]["expected"].replace(" or ", ", ").split(",")]
        return f"unknown {err['input']!r}; choose one of {', '.join(expected)}"
    if err["type"] == "extra_forbidden":
        return "unknown setting (not allowed here)"
    if err["type"] == "missing":
        return "required setting is missing"
    return err["msg"]


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """``key=value`` overrides with dotted paths (``stages.1.distill.steps=50``); values are parsed as YAML."""
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise DownsizeError(f"override {item!r} is not key=value", hint="e.g. stages.1.distill.steps=50 or teacher=zoo:coder-teacher")
        node: Any = raw
        parts = key.split(".")
        for i, part in enumerate(parts[:-1]):
            nxt = int(part) if isinstance(node, list) and part.isdigit() else part
            try:
                node = node[nxt]
            except (KeyError, IndexError, TypeError):
                raise DownsizeError(f"override {item!r}: {'.'.join(parts[:i + 1])} does not exist in the recipe",
                                    hint="check the path against the YAML; list indices count from 0") from None
        last = parts[-1]
        node[int(last) if isinstance(node, list) and last.isdigit() else last] = yaml.safe_load(value)
    return raw


def parse_recipe(raw: Any, source: str = "<recipe>", check_refs: bool = True) -> Recipe:
    """Build a Recipe from parsed YAML, collecting every schema and cross-reference error.

    ``check_refs=False`` skips checking that model and data references exist on this machine
    (for recipes written for another machine); the schema and stage graph are still checked.
    """
    errors: list[str] = []
    if not isinstance(raw, dict):
        raise RecipeError(source, ["the recipe must be a mapping with name, teacher, data and stages"])
    stages: list[Stage] = []
    named: list[tuple[int, str, dict]] = []  # every stage with a known kind, parsed or not, for cross-references
    raw_stages = raw.get("stages")
    if not isinstance(raw_stages, list):
        errors.append("stages: must be a list of {kind: settings} items")
        raw_stages = []
    for i, item in enumerate(raw_stages):
        if not isinstance(item, dict) or len(item) != 1:
            errors.append(f"stages[{i}]: must be a one-key mapping like {{distill: {{...}}}}")
            continue
        (kind, settings), = item.items()
        if kind not in STAGE_SETTINGS:
            errors.append(f"stages[{i}]: unknown stage kind {kind!r}; choose one of {', '.join(STAGE_SETTINGS)}")
            continue
        named.append((i, kind, settings if isinstance(settings, dict) else {}))
        try:
            stages.append(Stage(index=i, kind=kind, settings=STAGE_SETTINGS[kind](**(settings or {}))))
        except ValidationError as e:
            errors += [f"stages[{i}].{kind}.{_loc(err['loc'])}: {_message(err)}" for err in e.errors()]
        except TypeError:
            errors.append(f"stages[{i}].{kind}: settings must be a mapping")
    top = {k: v for k, v in raw.items() if k != "stages"}
    try:
        recipe = Recipe(**top, stages=stages or [Stage(index=0, kind="eval", settings=EvalSettings())], source=source)
    except ValidationError as e:
        errors += [f"{_loc(err['loc'])}: {_message(err)}" for err in e.errors()]
        recipe = None
    errors += _check_stage_names(named)
    if recipe is not None and check_refs:
        errors += _check_references(recipe)
    if errors:
        raise RecipeError(source, errors)
    return recipe


def _check_stage_names(named: list[tuple[int, str, dict]]) -> list[str]:
    """Stage names are unique and every `input` / eval `models` entry names an earlier stage."""
    errors, seen = [], ["teacher"]
    for i, kind, raw in named:
        where = f"stages[{i}].{kind}"
        name = raw.get("name") or kind
        inp = raw.get("input")
        if inp is not None and inp not in seen:
            errors.append(f"{where}.input: {inp!r} is not an earlier stage; choose one of {', '.join(seen)}")
        if kind == "eval" and isinstance(raw.get("models"), list):
            errors += [f"{where}.models: {m!r} is not an earlier stage; choose from {', '.join(seen)}"
                       for m in raw["models"] if m not in seen]
        if name in seen:
            errors.append(f"{where}.name: stage name {name!r} is used twice; give one of them a `name:`")
        seen.append(name)
    return errors


def _check_references(recipe: Recipe) -> list[str]:
    """Model/data references and stage inputs, checked without loading any weights."""
    from downsize.data.refs import resolve_data
    from downsize.models.refs import resolve_model

    errors = []

    def check_model(where: str, ref: str):
        try:
            resolve_model(ref)
        except DownsizeError as e:
            errors.append(f"{where}: {e.message}")

    def check_data(where: str, ref: str):
        try:
            resolve_data(ref)
        except DownsizeError as e:
            errors.append(f"{where}: {e.message}")

    check_model("teacher", recipe.teacher)
    check_data("data", recipe.data)
    stage_names = {"teacher"} | {st.name for st in recipe.stages}
    for st in recipe.stages:
        s, where = st.settings, f"stages[{st.index}].{st.kind}"
        teacher = getattr(s, "teacher", None)
        if teacher and not (isinstance(s, GenerateSettings) and teacher.startswith("openai:")):  # servers are not checked offline
            check_model(f"{where}.teacher", teacher)
        for field in ("data", "calib", "prompts", "codebase"):
            value = getattr(s, field, None)
            if value and value not in stage_names:  # a stage name means that stage's output (e.g. generated data)
                check_data(f"{where}.{field}", value)
        if isinstance(s, (DistillSettings, SftSettings)) and isinstance(s.student, str) and s.student not in stage_names:
            check_model(f"{where}.student", s.student)
        if isinstance(s, PruneSettings):
            if s.method in ("magnitude", "wanda", "sparsegpt") and s.sparsity is None and s.pattern is None:
                errors.append(f"{where}.sparsity: {s.method} needs a sparsity ratio or an N:M pattern")
            if s.method in ("width", "depth", "lowrank") and not s.targets:
                errors.append(f"{where}.targets: {s.method} needs targets, e.g. {{ffn: 512, hidden: 256}} or {{params: 0.5}}")
            if s.pattern:
                n, m = map(int, s.pattern.split(":"))
                if not 0 < n < m:
                    errors.append(f"{where}.pattern: N:M needs 0 < N < M, got {s.pattern}")
    return errors


def load_recipe(path: str | Path, overrides: list[str] | None = None, check_refs: bool = True) -> Recipe:
    path = Path(path)
    if not path.exists():
        raise DownsizeError(f"no recipe at {path}", hint="pass a YAML file, e.g. recipes/quickstart.yaml")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise DownsizeError(f"{path} is not valid YAML: {e}", hint="check indentation and quoting") from None
    raw = apply_overrides(raw, overrides or [])
    return parse_recipe(raw, str(path), check_refs)
