"""The structure the code promises: one config per stage kind shared by recipe, CLI and Python API; no import
cycles; modules short unless they say why; registries that refuse duplicates and name what exists."""

from __future__ import annotations

import ast
from pathlib import Path

import click
import pytest
import typer

from downsize.stages import STAGES, StageContext, run_stage
from downsize.stages.base import WIRING_FIELDS

SRC = Path(__file__).resolve().parents[1] / "src" / "downsize"
# stage kind -> the command that runs it (``export gguf`` is the quantize stage, ``export ollama`` the export stage)
COMMANDS = {"prune": ("prune",), "distill": ("distill",), "train": ("train",), "sft": ("sft",),
            "generate": ("generate",), "quantize": ("export", "gguf"), "export": ("export", "ollama"),
            "eval": ("eval",)}


def _click_command(path: tuple[str, ...]) -> click.Command:
    from downsize.cli import app

    cmd = typer.main.get_command(app)
    for part in path:
        cmd = cmd.commands[part]
    return cmd


def _cli_defaults(cmd: click.Command) -> dict[str, object]:
    return {p.name: p.default for p in cmd.params}


@pytest.mark.parametrize("kind", sorted(COMMANDS))
def test_recipe_cli_and_api_take_the_same_fields_with_the_same_defaults(kind):
    spec = STAGES[kind]
    config = spec.config
    # the recipe schema is the config itself
    from downsize.recipe import stage_configs

    assert stage_configs()[kind] is config
    # the CLI has one option per field (nested groups flattened), with the config's default
    cli = _cli_defaults(_click_command(COMMANDS[kind]))
    for name, field in config.model_fields.items():
        if name in WIRING_FIELDS:
            continue
        group = getattr(field.annotation, "model_fields", None) or getattr(
            next((a for a in getattr(field.annotation, "__args__", ()) if hasattr(a, "model_fields")), None),
            "model_fields", None)
        if group:
            for sub in group:
                assert f"{name}__{sub}" in cli, f"{kind}: --{name}-{sub} missing"
            continue
        assert name in cli, f"{kind}: the CLI has no option for field {name!r}"
        default = field.get_default(call_default_factory=True)
        if default in ({}, []) or field.is_required():
            assert cli[name] in (None, [], ()) or field.is_required(), (kind, name)
        elif isinstance(default, bool) or default is None:
            assert cli[name] == default, (kind, name, cli[name], default)
        else:
            assert type(default)(cli[name]) == default, (kind, name, cli[name], default)
    # the Python API validates through the same class: an unknown field or a bad value is refused the same way
    with pytest.raises(Exception, match="not_a_field|Extra inputs"):
        run_stage(kind, StageContext(out=Path("unused")), not_a_field=1)


def test_validation_is_the_engines_own():
    """The drift the architecture issue found: validate accepted what the engine refused at run time."""
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="beta"):
        STAGES["distill"].config(loss="jsd", beta=1.0)
    with pytest.raises(ValidationError, match="sparsity"):
        STAGES["prune"].config(method="wanda")
    assert STAGES["quantize"].config(quant="IQ4_XS").quant == "IQ4_XS"  # every type the quantizer knows


def test_a_loss_hyperparameter_is_declared_once():
    """DistillStage's loss fields are LossSpec's: a new hyperparameter in losses.py reaches recipe and CLI."""
    from downsize.distill.losses import DIVERGENCES, LossSpec

    cfg = STAGES["distill"].config
    for name, f in LossSpec.hyperparameters().items():
        assert cfg.model_fields[name].default == f.default and cfg.model_fields[name].description == f.metadata["help"]
    assert set(cfg.model_fields["loss"].annotation.__args__) == set(DIVERGENCES)


def test_families_are_one_file_each():
    """Every family module registers its GGUF family and its build config; the tests' tiny models come from it."""
    from downsize.export.gguf.base import FAMILIES
    from downsize.models.arch import arch_configs

    archs = arch_configs()
    for key, spec in archs.items():
        assert spec.architecture in FAMILIES, f"{key}: no GGUF family for {spec.architecture}"
    files = sorted(p.stem for p in (SRC / "families").glob("*.py") if p.stem != "__init__")
    owners = {FAMILIES[spec.architecture].__module__.rsplit(".", 1)[-1] for spec in archs.values()}
    assert owners == set(files)


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _top_level_imports(path: Path, name: str) -> set[str]:
    """Modules imported when ``name`` is imported (module-level statements; not TYPE_CHECKING blocks)."""
    tree = ast.parse(path.read_text())
    out: set[str] = set()
    pkg = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]

    def visit(nodes):
        for node in nodes:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            if isinstance(node, (ast.If, ast.Try)):
                visit(node.body)
                visit(getattr(node, "orelse", []))
                for h in getattr(node, "handlers", []):
                    visit(h.body)
            elif isinstance(node, ast.Import):
                out.update(a.name for a in node.names if a.name.startswith("downsize"))
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(pkg.split(".")[: len(pkg.split(".")) - node.level + 1] + ([base] if base else []))
                if base.startswith("downsize"):
                    out.add(base)
                    out.update(f"{base}.{a.name}" for a in node.names)
    visit(tree.body)
    return out


def test_no_import_cycles():
    modules = {_module_name(p): p for p in SRC.rglob("*.py")}
    graph = {m: {d for d in _top_level_imports(p, m) if d in modules and d != m} for m, p in modules.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(m):
        state[m] = 1
        stack.append(m)
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(d):] + [d]))
            if d not in state:
                dfs(d)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            dfs(m)


LONG = 400


def test_modules_are_short_or_say_why():
    long = []
    for p in sorted(SRC.rglob("*.py")):
        n = len(p.read_text().splitlines())
        doc = ast.get_docstring(ast.parse(p.read_text())) or ""
        if n > LONG and "Why this module is long" not in doc:
            long.append(f"{p.relative_to(SRC)} ({n} lines)")
    assert not long, "modules over ~400 lines need a reason in their docstring: " + ", ".join(long)


def test_registries_refuse_duplicates_and_list_what_exists():
    from downsize.errors import DownsizeError
    from downsize.registry import Registry

    r = Registry("thing")
    r.add("a", 1)
    with pytest.raises(ValueError, match="registered twice"):
        r.add("a", 2)
    with pytest.raises(DownsizeError, match="available: a"):
        r.get("b")
    lazy = Registry("lazy")
    lazy.add("join", "os.path:join")
    import os.path

    assert lazy["join"] is os.path.join
