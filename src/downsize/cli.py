"""The command line: the only place that parses arguments, prints and exits.

    $ downsize --help
    $ downsize zoo list
    $ downsize eval zoo:coder-teacher --data zoo:stdlib
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from downsize.errors import DownsizeError, NotBuiltYet

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Turn a large language model into a smaller one that keeps its skill and runs in llama.cpp or Ollama.")
zoo_app = typer.Typer(no_args_is_help=True, help="The reference zoo: small models trained on the Python standard library.")
app.add_typer(zoo_app, name="zoo")
console = Console()
err = Console(stderr=True, soft_wrap=True)


def _not_built(command: str, issue: str) -> None:
    raise NotBuiltYet(f"'downsize {command}' is not built yet in this version", hint=f"it is planned ({issue})")


@zoo_app.command("list")
def zoo_list(as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table")):
    """Show the zoo models with their size and validation perplexity."""
    from downsize.zoo.registry import list_zoo

    rows = list_zoo()
    if as_json:
        console.print_json(json.dumps(rows))
        return
    t = Table("name", "architecture", "params", "vocab", "val ppl", "test ppl", "trained", "status")
    for r in rows:
        t.add_row(r["name"], r.get("architecture", "-"), f"{r['parameters'] / 1e6:.1f}M" if r.get("parameters") else "-",
                  str(r.get("vocab_size", "-")), f"{r['val_ppl']:.2f}" if r.get("val_ppl") else "-",
                  f"{r['test_ppl']:.2f}" if r.get("test_ppl") else "-",
                  f"{r['wall_min']:.0f} min" if r.get("wall_min") else "-", r["status"])
    console.print(t)


@zoo_app.command("path")
def zoo_path_cmd(name: str):
    """Print the directory of a shipped zoo model."""
    from downsize.models.refs import resolve_model

    print(resolve_model(f"zoo:{name}").path)


@zoo_app.command("train")
def zoo_train(
    name: str = typer.Argument(..., help="zoo model to train, e.g. coder-teacher"),
    steps: Optional[int] = typer.Option(None, help="optimiser steps"),
    minutes: Optional[float] = typer.Option(None, help="wall-time budget instead of --steps (steps resolved from measured speed)"),
    batch_size: Optional[int] = typer.Option(None, help="override the zoo spec's batch size"),
    out: Path = typer.Option(None, help="output directory (default: the zoo's own folder)"),
    seed: int = typer.Option(0),
    threads: Optional[int] = typer.Option(None, help="torch CPU threads"),
    resume: bool = typer.Option(False, help="continue from the last checkpoint in OUT.work"),
):
    """Train a zoo model from scratch on zoo:stdlib (reproducible from the seed)."""
    from downsize.zoo import ZOO, zoo_path
    from downsize.zoo.train import train_zoo_model

    if name not in ZOO:
        raise DownsizeError(f"no zoo model called {name!r}", hint=f"choose one of {', '.join(ZOO)}")
    dest = out or zoo_path(name)
    if (steps is None) == (minutes is None):
        raise DownsizeError("give exactly one of --steps and --minutes", hint="e.g. --steps 2000 or --minutes 60")
    train_zoo_model(name, steps=steps, out=Path(dest), seed=seed, threads=threads, resume=resume, minutes=minutes,
                    batch_size=batch_size)
    console.print(f"[green]wrote[/green] {dest}")


@app.command("eval")
def eval_cmd(
    model: str = typer.Argument(..., help="model reference: HF directory, zoo:NAME, FILE.gguf or ollama:NAME"),
    data: str = typer.Option("zoo:stdlib", help="data reference: zoo:stdlib, a text file, a directory or JSONL"),
    split: Optional[str] = typer.Option(None, help="train, validation, test or all (default: validation for zoo:stdlib, all otherwise)"),
    seq_len: int = typer.Option(256, help="window length for perplexity"),
    batch_size: int = typer.Option(8),
    max_tokens: Optional[int] = typer.Option(None, help="evaluate only the first N tokens"),
    sample: bool = typer.Option(True, help="show a sample completion"),
    as_json: bool = typer.Option(False, "--json"),
):
    """Perplexity of a model on a data reference (token-weighted, exact, batch-size independent)."""
    from downsize.eval.run import evaluate

    result = evaluate(model, data, split=split, seq_len=seq_len, batch_size=batch_size, max_tokens=max_tokens,
                      sample=sample, warn=lambda m: err.print(f"[yellow]warning:[/yellow] {m}"))
    if as_json:
        console.print_json(json.dumps(result))
        return
    t = Table("metric", "value")
    for k in ("model", "data", "parameters", "tokens", "perplexity", "nll"):
        v = result[k]
        t.add_row(k, f"{v:,.4f}" if isinstance(v, float) else f"{v:,}" if isinstance(v, int) else str(v))
    console.print(t)
    if result.get("sample"):
        console.print("[bold]sample completion[/bold]")
        console.print(result["sample"]["prompt"], end="", style="dim", markup=False, highlight=False)
        console.print(result["sample"]["completion"], markup=False, highlight=False)


@app.command("distill", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def distill_cmd():
    """Distil a teacher into a student (logit KD, offline top-k cache, on-policy GKD)."""
    _not_built("distill", "issue #4")


@app.command("generate", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def generate_cmd():
    """Generate teacher data: prompts from a codebase, tool-calling traces, any OpenAI-compatible server."""
    _not_built("generate", "issue #7")


@app.command("prune", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def prune_cmd():
    """Prune a model: depth, width (Minitron), unstructured/N:M (magnitude, Wanda, SparseGPT), low-rank."""
    _not_built("prune", "issue #6")


@app.command("quantize", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def quantize_cmd():
    """Quantize a GGUF (K-quants with an importance matrix)."""
    _not_built("quantize", "issue #5")


@app.command("export", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def export_cmd():
    """Export to GGUF and Ollama (Modelfile with a converted chat template)."""
    _not_built("export", "issue #5")


@app.command("plan")
def plan_cmd(
    recipe: Optional[Path] = typer.Argument(None, help="recipe YAML; without one, the general pipeline is printed"),
    overrides: Optional[list[str]] = typer.Argument(None, help="key=value overrides, e.g. stages.1.distill.steps=50"),
):
    """Print the steps of a recipe with what each reads, writes and costs."""
    from downsize.pipeline import GENERAL_PIPELINE, plan_recipe
    from downsize.recipe import load_recipe

    if recipe is None:
        t = Table("stage", "what it does", title="the downsize pipeline")
        for name, what in GENERAL_PIPELINE:
            t.add_row(name, what)
        console.print(t)
        return
    r = load_recipe(recipe, overrides or [])
    t = Table("stage", "kind", "reads", "writes", "rough cost", title=f"{r.name}: teacher {r.teacher}, data {r.data}")
    for row in plan_recipe(r):
        t.add_row(row["stage"], row["kind"], row["reads"], row["writes"], row["cost"])
    console.print(t)


@app.command("validate")
def validate_cmd(
    recipe: Path = typer.Argument(..., help="recipe YAML"),
    overrides: Optional[list[str]] = typer.Argument(None, help="key=value overrides"),
    check_refs: bool = typer.Option(True, help="check that model and data references exist here (--no-check-refs for recipes meant for another machine)"),
):
    """Check a recipe without loading weights; report every error at once."""
    from downsize.recipe import load_recipe

    r = load_recipe(recipe, overrides or [], check_refs=check_refs)
    console.print(f"[green]ok[/green] {recipe}: {len(r.stages)} stages ({', '.join(s.name for s in r.stages)})")


@app.command("run")
def run_cmd(
    recipe: Path = typer.Argument(..., help="recipe YAML"),
    overrides: Optional[list[str]] = typer.Argument(None, help="key=value overrides"),
    out: Optional[Path] = typer.Option(None, help="run directory (default: runs/RECIPE_NAME)"),
    from_stage: Optional[str] = typer.Option(None, "--from", help="rerun this stage and every later one"),
):
    """Run a recipe (prune → distill → quantize → export → eval) with a manifest and resume."""
    import logging

    from downsize.pipeline import run_recipe
    from downsize.recipe import load_recipe

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    r = load_recipe(recipe, overrides or [])
    run_dir = out or Path("runs") / r.name
    run_recipe(r, run_dir, from_stage=from_stage, log=lambda m: console.print(m, markup=False, highlight=False))
    console.print(f"[green]done[/green]: {run_dir}/report.html, {run_dir}/report.md")


def main() -> None:
    try:
        app()
    except DownsizeError as e:
        err.print(f"[red]error:[/red] {e.message}", markup=True, highlight=False)
        if e.hint:
            err.print(f"  [cyan]hint:[/cyan] {e.hint}", highlight=False)
        sys.exit(2)


if __name__ == "__main__":
    main()
