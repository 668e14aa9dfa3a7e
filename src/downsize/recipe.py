"""Recipes: one YAML file is one pipeline, parsed into frozen typed configs.

    $ downsize validate recipes/quickstart.yaml stages.1.distill.steps=50
    >>> raw = {"name": "demo", "teacher": "zoo:coder-teacher-qwen", "data": "zoo:stdlib",
    ...        "stages": [{"prune": {"method": "width", "targets": {"ffn": 256}}}, {"distill": {"steps": 20}}]}
    >>> recipe = parse_recipe(apply_overrides(raw, ["stages.1.distill.steps=50"]))
    >>> [s.kind for s in recipe.stages], recipe.stages[1].settings.steps
    (['prune', 'distill'], 50)
    >>> parse_recipe({"name": "bad", "teacher": "zoo:coder-teacher-qwen", "stages": [{"distill": {"loss": "fkll", "stepz": 1}}]})
    Traceback (most recent call last):
    ...
    downsize.recipe.RecipeError: <recipe>: 2 error(s)
      stages[0].distill.loss: unknown 'fkll'; choose one of fkl, rkl, jsd, skl, srkl, tvd
      stages[0].distill.stepz: unknown setting (not allowed here) (did you mean 'steps'?)
      hint: fix each line above (paths point into the YAML); `downsize validate` re-checks without loading weights

A recipe names the teacher, the data and an ordered list of stages, each a one-key mapping
``{kind: settings}``. Validation never loads weights and reports every error at once, each
with its path in the file: ``stages[2].distill.loss: unknown 'fkll'; choose one of fkl, ...``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from downsize.errors import DownsizeError
from downsize.stages.base import StageConfig


def stage_configs() -> dict[str, type]:
    """Stage kind -> its config class: the recipe schema is the stages' own configs (downsize.stages)."""
    from downsize.stages import STAGES

    return {kind: spec.config for kind, spec in STAGES.items()}


class Stage(BaseModel):
    model_config = ConfigDict(frozen=True)
    index: int
    kind: str
    settings: StageConfig

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


def _did_you_mean(word: str, choices) -> str:
    import difflib

    close = difflib.get_close_matches(str(word), list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _located(prefix: str, err: dict, model: type) -> str:
    """One pydantic error as ``path: message``; a misspelt key gets the closest field name."""
    loc = _loc(err["loc"])
    where = ".".join(p for p in (prefix, loc) if p)
    msg = _message(err)
    if err["type"] == "extra_forbidden" and len(err["loc"]) == 1:
        msg += _did_you_mean(err["loc"][0], model.model_fields)
    return f"{where}: {msg}" if where else msg


def _message(err: dict) -> str:
    if err["type"] == "literal_error":
        expected = [e.strip().strip("'") for e in err["ctx"]["expected"].replace(" or ", ", ").split(",")]
        return f"unknown {err['input']!r}; choose one of {', '.join(expected)}"
    if err["type"] == "extra_forbidden":
        return "unknown setting (not allowed here)"
    if err["type"] == "missing":
        return "required setting is missing"
    msg = err["msg"]
    return msg.removeprefix("Value error, ")  # a config's own rule (StageConfig.problems)


def _stage_path(raw: dict, parts: list[str]) -> list[str]:
    """``distilled.steps`` / ``distill.steps`` / ``stages.1.steps`` -> ``stages.1.distill.steps``."""
    stages = raw.get("stages") if isinstance(raw, dict) else None
    if not isinstance(stages, list):
        return parts
    entries = [(i, *next(iter(st.items()))) for i, st in enumerate(stages) if isinstance(st, dict) and len(st) == 1]
    if parts[0] == "stages" and len(parts) > 2 and parts[1].isdigit():
        for i, kind, _ in entries:
            if i == int(parts[1]) and parts[2] != kind:
                return ["stages", parts[1], kind, *parts[2:]]
        return parts
    if parts[0] in raw or parts[0] == "stages":
        return parts
    by_name = [(i, kind) for i, kind, st in entries if (st or {}).get("name", kind) == parts[0]]
    by_kind = [(i, kind) for i, kind, _ in entries if kind == parts[0]]
    match = by_name or (by_kind if len(by_kind) == 1 else [])
    if match:
        i, kind = match[0]
        return ["stages", str(i), kind, *parts[1:]]
    return parts


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """``key=value`` overrides, values parsed as YAML: ``distilled.steps=300`` (a stage by name, or by kind when
    it is the only one of its kind), ``teacher=zoo:coder-teacher``, or the full path ``stages.1.distill.steps=50``."""
    if not isinstance(raw, dict):
        raise DownsizeError("the recipe is empty or not a mapping, so overrides cannot apply",
                            hint="a recipe is a YAML mapping with name, teacher, data and stages")
    names = [str((next(iter(st.values())) or {}).get("name", next(iter(st)))) for st in raw.get("stages") or []
             if isinstance(st, dict) and len(st) == 1 and isinstance(next(iter(st.values())), (dict, type(None)))]
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise DownsizeError(f"override {item!r} is not key=value",
                                hint="e.g. distilled.steps=50, stages.1.distill.steps=50 or teacher=zoo:coder-teacher")
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError as e:
            raise DownsizeError(f"override {item!r}: the value is not valid YAML ({e.problem})",
                                hint="quote strings with special characters, e.g. key='a: b'") from None
        parts = _stage_path(raw, key.split("."))
        node: Any = raw
        for i, part in enumerate(parts[:-1]):
            where = ".".join(parts[:i + 1])
            if isinstance(node, list) and part.isdigit() and int(part) < len(node):
                child = node[int(part)]
            elif isinstance(node, dict) and part in node:
                child = node[part]
                if child is None:  # `merge:` written with no settings
                    child = node[part] = {}
            else:
                raise DownsizeError(f"override {item!r}: {where} does not exist in the recipe"
                                    + (_did_you_mean(part, [*raw, *names]) if i == 0 else ""),
                                    hint="name a stage (e.g. distilled.steps=50), a top-level key, or the full "
                                         "path; list indices count from 0")
            if not isinstance(child, (dict, list)):
                raise DownsizeError(f"override {item!r}: {where} is a value ({child!r}), not a mapping, so it has "
                                    f"no {parts[i + 1]!r}", hint=f"override it as a whole: {where}=...")
            node = child
        last = parts[-1]
        if isinstance(node, list):
            if not last.isdigit() or int(last) >= len(node):
                raise DownsizeError(f"override {item!r}: index {last} is outside the list {'.'.join(parts[:-1])} "
                                    f"({len(node)} items)", hint="list indices count from 0")
            node[int(last)] = parsed
        else:
            node[last] = parsed
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
        configs = stage_configs()
        if kind not in configs:
            errors.append(f"stages[{i}]: unknown stage kind {kind!r}; choose one of {', '.join(configs)}"
                          + _did_you_mean(kind, configs))
            continue
        named.append((i, kind, settings if isinstance(settings, dict) else {}))
        if settings is not None and not isinstance(settings, dict):
            errors.append(f"stages[{i}].{kind}: settings must be a mapping, got {type(settings).__name__} {settings!r}")
            continue
        try:
            stages.append(Stage(index=i, kind=kind, settings=configs[kind](**(settings or {}))))
        except ValidationError as e:
            errors += [_located(f"stages[{i}].{kind}", err, configs[kind]) for err in e.errors()]
    top = {k: v for k, v in raw.items() if k != "stages"}
    try:
        recipe = Recipe(**top, stages=stages or [Stage(index=0, kind="eval", settings=stage_configs()["eval"]())],
                        source=source)
    except ValidationError as e:
        errors += [_located("", err, Recipe) for err in e.errors()]
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
    from downsize.models.refs import check_model_ref

    errors = []

    def check_model(where: str, ref: str):
        try:
            check_model_ref(ref)
        except DownsizeError as e:
            errors.append(f"{where}: {e.message}" + (f" (fix: {e.hint})" if e.hint else ""))

    def check_data(where: str, ref: str):
        try:
            resolve_data(ref)
        except DownsizeError as e:
            errors.append(f"{where}: {e.message}" + (f" (fix: {e.hint})" if e.hint else ""))

    check_model("teacher", recipe.teacher)
    check_data("data", recipe.data)
    stage_names = {"teacher"} | {st.name for st in recipe.stages}
    for st in recipe.stages:
        s, where = st.settings, f"stages[{st.index}].{st.kind}"
        teacher = getattr(s, "teacher", None)
        if teacher and not teacher.startswith("openai:"):  # servers are not checked offline
            check_model(f"{where}.teacher", teacher)
        for field in ("data", "calib", "prompts", "codebase"):
            value = getattr(s, field, None)
            if value and value not in stage_names:  # a stage name means that stage's output (e.g. generated data)
                check_data(f"{where}.{field}", value)
        student = getattr(s, "student", None)
        if isinstance(student, str) and student not in stage_names and not student.startswith("teacher:"):
            check_model(f"{where}.student", student)
    return errors


def load_recipe(path: str | Path, overrides: list[str] | None = None, check_refs: bool = True) -> Recipe:
    path = Path(path)
    if not path.exists():
        raise DownsizeError(f"no recipe at {path}", hint="pass a YAML file, e.g. recipes/quickstart.yaml")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise DownsizeError(f"{path} is not a text file (not UTF-8)", hint="pass a YAML recipe, e.g. recipes/quickstart.yaml") from None
    except yaml.YAMLError as e:
        raise DownsizeError(f"{path} is not valid YAML: {e}", hint="check indentation and quoting") from None
    raw = apply_overrides(raw, overrides or [])
    return parse_recipe(raw, str(path), check_refs)
