"""The command line: the only place that parses arguments, prints and exits.

    $ downsize --help
    $ downsize zoo list
    $ downsize eval zoo:coder-teacher --data zoo:stdlib
"""

from __future__ import annotations

import json
import shutil
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
# Tables are never cut to fit: a narrow or absent terminal (a pipe, CI logs) gets at least 120 columns.
console = Console(width=max(120, shutil.get_terminal_size((120, 24)).columns))
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
    t = Table()
    for col in ("name", "arch", "params", "vocab", "val ppl", "test ppl", "trained", "status"):
        t.add_column(col, no_wrap=True)
    for r in rows:
        t.add_row(r["name"], r.get("architecture", "-").replace("ForCausalLM", ""),
                  f"{r['parameters'] / 1e6:.1f}M" if r.get("parameters") else "-", str(r.get("vocab_size", "-")),
                  f"{r['val_ppl']:.2f}" if r.get("val_ppl") else "-", f"{r['test_ppl']:.2f}" if r.get("test_ppl") else "-",
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
    init_from: Optional[str] = typer.Option(None, help="start from these weights (same architecture and tokenizer) "
                                            "under a fresh warmup + cosine schedule, e.g. zoo:coder-teacher"),
    passes: Optional[float] = typer.Option(None, help="passes over the train split instead of --steps"),
    lr: Optional[float] = typer.Option(None, help="peak learning rate (default: the zoo spec's)"),
    warmup_steps: Optional[int] = typer.Option(None, help="warmup steps (default: the zoo spec's)"),
    mixed_precision: Optional[str] = typer.Option(None, help="bf16 or no (default: bf16; use no on AVX2-only CPUs)"),
    eval_every: int = typer.Option(0, help="measure validation perplexity every N steps (0 = off); the curve goes into "
                                   "the card and training_curve.json"),
    eval_tokens: int = typer.Option(65536, help="validation tokens per point of the --eval-every curve"),
):
    """Train a zoo model on zoo:stdlib: from scratch (reproducible from the seed) or continuing --init-from."""
    from downsize.zoo import ZOO, zoo_path
    from downsize.zoo.train import train_zoo_model

    if name not in ZOO:
        raise DownsizeError(f"no zoo model called {name!r}", hint=f"choose one of {', '.join(ZOO)}")
    dest = out or zoo_path(name)
    if sum(x is not None for x in (steps, minutes, passes)) != 1:
        raise DownsizeError("give exactly one of --steps, --passes and --minutes", hint="e.g. --steps 2000, --passes 3 or --minutes 60")
    train_zoo_model(name, steps=steps, out=Path(dest), seed=seed, threads=threads, resume=resume, minutes=minutes,
                    batch_size=batch_size, init_from=init_from, passes=passes, lr=lr, warmup_steps=warmup_steps,
                    mixed_precision=mixed_precision, eval_every=eval_every, eval_tokens=eval_tokens)
    console.print(f"[green]wrote[/green] {dest}")


@app.command("eval")
def eval_cmd(
    model: str = typer.Argument(..., help="model reference: HF directory, zoo:NAME, FILE.gguf or ollama:NAME"),
    teacher: Optional[str] = typer.Option(None, help="also compare with this model: KL(teacher || model) and top-1 agreement (same tokenizer)"),
    data: str = typer.Option("zoo:stdlib", help="data reference: zoo:stdlib, a text file, a directory or JSONL"),
    split: Optional[str] = typer.Option(None, help="train, validation, test or all (default: validation for zoo:stdlib, all otherwise)"),
    seq_len: int = typer.Option(256, help="window length for perplexity"),
    batch_size: int = typer.Option(8),
    max_tokens: Optional[int] = typer.Option(None, help="evaluate only the first N tokens (default: all; 32768 when comparing or for a GGUF)"),
    speed: bool = typer.Option(False, help="also measure prompt/generation tokens/s and peak RAM (fresh process; llama.cpp for GGUF)"),
    threads: Optional[int] = typer.Option(None, help="CPU threads for --speed"),
    sample: bool = typer.Option(True, help="show a sample completion (HF models)"),
    lm_eval: Optional[str] = typer.Option(None, "--lm-eval", help="lm-evaluation-harness tasks, comma-separated "
                                          "(built in: stdlib_next_line; yours: --lm-eval-include)"),
    lm_eval_include: Optional[Path] = typer.Option(None, help="folder of lm-eval task YAMLs (local data files)"),
    lm_eval_limit: Optional[int] = typer.Option(None, help="at most N documents per lm-eval task"),
    as_json: bool = typer.Option(False, "--json"),
):
    """Perplexity (token-weighted, exact), KL and top-1 agreement with a teacher, size, speed and RAM of a model;
    lm-evaluation-harness tasks on local data."""
    from downsize.eval.run import evaluate

    result = evaluate(model, data, split=split, seq_len=seq_len, batch_size=batch_size, max_tokens=max_tokens,
                      sample=sample, warn=lambda m: err.print(f"[yellow]warning:[/yellow] {m}"), teacher=teacher,
                      speed=speed, threads=threads)
    if lm_eval:
        from downsize.eval.harness import run_lm_eval

        tasks = [t.strip() for t in lm_eval.split(",") if t.strip()]
        result["lm_eval"] = run_lm_eval(model, tasks, include=lm_eval_include, limit=lm_eval_limit)
        if teacher:
            result["teacher_lm_eval"] = run_lm_eval(teacher, tasks, include=lm_eval_include, limit=lm_eval_limit)
    if as_json:
        console.print_json(json.dumps(result))
        return
    cols = ["metric", model] + ([teacher] if teacher else [])
    t = Table(*cols)
    fmt = lambda v: "–" if v is None else f"{v:,.4f}" if isinstance(v, float) else f"{v:,}" if isinstance(v, int) else str(v)  # noqa: E731
    rows = [("backend", "backend", None), ("parameters", "parameters", "teacher_parameters"),
            ("size on disk MB", "size_mb", "teacher_size_mb"), ("tokens", "tokens", None),
            ("perplexity", "perplexity", "teacher_perplexity"), ("KL(teacher || model)", "kl_to_teacher", None),
            ("top-1 agreement", "top1_agreement", None)]
    for label, key, tkey in rows:
        if key in result:
            t.add_row(label, fmt(result[key]), *([fmt(result.get(tkey)) if tkey else ""] if teacher else []))
    for label, key in (("prompt tokens/s", "prompt_tok_s"), ("generation tokens/s", "gen_tok_s"), ("peak RSS MB", "peak_rss_mb")):
        if "speed" in result:
            t.add_row(label, fmt(result["speed"][key]),
                      *([fmt(result["teacher_speed"][key]) if "teacher_speed" in result else ""] if teacher else []))
    for task, metrics in result.get("lm_eval", {}).items():
        for k in ("acc", "acc_norm", "exact_match"):
            if k in metrics:
                tm = result.get("teacher_lm_eval", {}).get(task, {})
                cell = lambda m: f"{m[k]:.4f} ± {m.get(k + '_stderr', 0):.4f}" if k in m else "–"  # noqa: E731
                t.add_row(f"lm-eval {task} {k}", cell(metrics), *([cell(tm)] if teacher else []))
    console.print(f"data: {result['data']}, windows of {result['seq_len']}")
    console.print(t)
    if result.get("sample"):
        console.print("[bold]sample completion[/bold]")
        console.print(result["sample"]["prompt"], end="", style="dim", markup=False, highlight=False)
        console.print(result["sample"]["completion"], markup=False, highlight=False)


@app.command("eval-tools")
def eval_tools_cmd(
    model: list[str] = typer.Option(..., help="model reference (repeatable: teacher first, then students); openai:URL#MODEL too"),
    tasks: Path = typer.Option(..., help="JSONL task suite: {prompt, expected, needs_tools} per line"),
    codebase: Path = typer.Option(..., help="the repository the questions are about (tool sandbox root)"),
    make_tasks: int = typer.Option(0, help="first write N codebase questions (+ N/4 negatives) with computed answers to --tasks"),
    max_turns: int = typer.Option(4),
    max_tokens: int = typer.Option(256),
    as_json: bool = typer.Option(False, "--json"),
):
    """Tool use %, accuracy %, median seconds per query and peak RAM, side by side per model."""
    from downsize.eval.tools import compare, make_task_suite

    if make_tasks:
        n = make_task_suite(codebase, tasks, n=make_tasks, n_negative=max(1, make_tasks // 4))
        err.print(f"wrote {n} tasks to {tasks}")
    rows = compare(model, tasks, codebase, max_turns, max_tokens)
    if as_json:
        console.print_json(json.dumps([{k: v for k, v in r.items() if k != "rows"} for r in rows]))
        return
    fmt = lambda v, f="{:.1f}": "-" if v is None else f.format(v)  # noqa: E731
    t = Table("model", "tasks", "tool use %", "no tools on negatives %", "accuracy %", "s / query", "peak RAM MiB")
    for r in rows:
        t.add_row(r["model"], str(r["tasks"]), fmt(r["tool_use_pct"]), fmt(r["no_tool_on_negative_pct"]),
                  fmt(r["accuracy_pct"]), fmt(r["median_s"], "{:.2f}"), fmt(r["peak_rss_mb"], "{:.0f}"))
    console.print(t)


@app.command("distill")
def distill_cmd(
    teacher: Optional[str] = typer.Option(None, help="teacher model reference (not needed with --cache unless --student is teacher:...)"),
    student: Optional[str] = typer.Option(None, help="model reference, or teacher:num_hidden_layers=4,hidden_size=192 (teacher config, random init)"),
    data: str = typer.Option("zoo:stdlib", help="data reference (zoo:stdlib, text file, directory, JSONL)"),
    out: Optional[Path] = typer.Option(None, help="output HF directory (checkpoints go to OUT.work)"),
    steps: int = typer.Option(200), batch_size: int = typer.Option(8), grad_accum: int = typer.Option(1),
    lr: float = typer.Option(1e-3), warmup: int = typer.Option(20, help="warmup steps"),
    seq_len: int = typer.Option(256), windows: Optional[int] = typer.Option(None, help="use only the first N windows of the data"),
    loss: str = typer.Option("fkl", help="fkl, rkl, jsd, skl, srkl, tvd"),
    temperature: float = typer.Option(1.0), kd_ratio: float = typer.Option(1.0, help="weight of KD vs cross entropy (0 = CE only)"),
    beta: float = typer.Option(0.5, help="jsd β"), alpha: float = typer.Option(0.1, help="skl/srkl α"),
    chunk_size: int = typer.Option(256, help="tokens per loss chunk"),
    teacher_dtype: str = typer.Option("bf16", help="bf16 or fp32 teacher weights"),
    teacher_device: str = typer.Option("auto", help="where the teacher runs: auto (the GPU if any, else CPU), cpu, "
                                       "cuda, cuda:N, other-gpu, shard, offload (docs/gpu.md)"),
    cache: Optional[Path] = typer.Option(None, help="train from this offline top-k teacher cache"),
    write_cache: Optional[Path] = typer.Option(None, help="only run the teacher over the data and write a top-k cache here"),
    top_k: int = typer.Option(32, help="ids per position in the cache"),
    lmbda: float = typer.Option(0.0, help="on-policy (GKD): probability that a batch is sampled from the student"),
    seq_kd: bool = typer.Option(False, help="off-policy batches use teacher-sampled continuations (sequence-level KD)"),
    prompt_len: int = typer.Option(32), new_tokens: int = typer.Option(64),
    vocab_align: str = typer.Option("auto", help="auto: compare shared ids when embedding sizes differ; off: refuse"),
    cross_tokenizer: str = typer.Option("error", help="error, or uld for teacher/student with different tokenizers"),
    lora_r: int = typer.Option(0, help="LoRA rank on the student (0 = full fine-tuning)"), lora_alpha: int = typer.Option(32),
    qlora: bool = typer.Option(False, help="4-bit NF4 base for LoRA (CUDA + bitsandbytes)"),
    checkpoint_every: int = typer.Option(0), seed: int = typer.Option(0),
    mixed_precision: str = typer.Option("bf16", help="bf16 or no"), threads: Optional[int] = typer.Option(None),
    resume: bool = typer.Option(False, help="continue from OUT.work/checkpoints"),
    val_tokens: int = typer.Option(32768, help="closing validation pass: tokens of zoo:stdlib's validation split (0 = off)"),
    keep_work: bool = typer.Option(False, help="keep OUT.work/checkpoints after a successful save (default: removed; metrics.jsonl stays)"),
):
    """Distil a teacher into a student (logit KD, offline top-k cache, on-policy GKD, cross-tokenizer ULD)."""
    import logging

    import torch

    from downsize.distill import DistillConfig, LossSpec, OnPolicy, cache_teacher, distill
    from downsize.train.loop import LoraSpec, TrainConfig

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if threads:
        torch.set_num_threads(threads)
    if write_cache:
        if not teacher:
            raise DownsizeError("--write-cache needs --teacher", hint="e.g. downsize distill --teacher zoo:coder-teacher --write-cache runs/cache")
        meta = cache_teacher(teacher, data, write_cache, k=top_k, seq_len=seq_len, windows=windows,
                             batch_size=batch_size, temperature=temperature, dtype=teacher_dtype, device=teacher_device)
        console.print(f"[green]wrote[/green] {write_cache}: {meta['windows']} windows × {meta['seq_len']} tokens, "
                      f"{meta['bytes_per_token']} bytes/token (dense bf16: {meta['dense_bf16_bytes_per_token']})")
        return
    if not student or not out:
        raise DownsizeError("give --student and --out", hint="e.g. --student teacher:num_hidden_layers=4,hidden_size=192 --out runs/student")
    cfg = DistillConfig(
        train=TrainConfig(steps=steps, batch_size=batch_size, grad_accum=grad_accum, lr=lr, warmup_steps=warmup,
                          checkpoint_every=checkpoint_every, seed=seed, mixed_precision=mixed_precision),
        loss=LossSpec(loss, temperature=temperature, kd_ratio=kd_ratio, beta=beta, alpha=alpha, chunk_size=chunk_size),
        seq_len=seq_len, windows=windows, teacher_dtype=teacher_dtype, cache=str(cache) if cache else None,
        on_policy=OnPolicy(lmbda=lmbda, seq_kd=seq_kd, prompt_len=prompt_len, new_tokens=new_tokens) if (lmbda or seq_kd) else None,
        vocab_align=vocab_align, cross_tokenizer=cross_tokenizer,
        lora=LoraSpec(r=lora_r, alpha=lora_alpha, quantize_base="nf4" if qlora else None) if lora_r else None,
        val_tokens=val_tokens, keep_work=keep_work, teacher_device=teacher_device)
    path = distill(teacher, student, data, cfg, out, resume=resume)
    card = json.loads((path / "distill_card.json").read_text())
    fm = card["final_metrics"]
    console.print(f"[green]wrote[/green] {path}: {card['steps']} steps, {card['tokens']:,} tokens, "
                  + ", ".join(f"{k} {v:.4g}" for k, v in fm.items() if isinstance(v, float)))


@app.command("sft")
def sft_cmd(
    model: str = typer.Option(..., help="the student to fine-tune: HF directory, zoo:NAME, FILE.gguf"),
    data: str = typer.Option(..., help="chat JSONL ({'messages': [...], 'tools': [...]}), e.g. from `downsize generate`"),
    out: Path = typer.Option(..., help="output HF directory (LoRA merged; checkpoints go to OUT.work)"),
    steps: int = typer.Option(100), batch_size: int = typer.Option(4), grad_accum: int = typer.Option(1),
    lr: float = typer.Option(2e-4), warmup: int = typer.Option(10, help="warmup steps"),
    max_seq_len: int = typer.Option(1024, help="conversations are cut to this many tokens"),
    logprob_kd: float = typer.Option(0.0, help="weight of forward KL to the teacher's stored top-k logprobs "
                                     "(data written with --top-logprobs); 0 = cross entropy only"),
    lora_r: int = typer.Option(0, help="LoRA rank (0 = full fine-tuning)"), lora_alpha: int = typer.Option(32),
    qlora: bool = typer.Option(False, help="4-bit NF4 base for LoRA (CUDA + bitsandbytes)"),
    checkpoint_every: int = typer.Option(0), seed: int = typer.Option(0),
    mixed_precision: str = typer.Option("bf16", help="bf16 or no"), threads: Optional[int] = typer.Option(None),
    resume: bool = typer.Option(False, help="continue from OUT.work/checkpoints"),
):
    """Fine-tune on chat data (loss on assistant tokens only), full or LoRA; text KD from teacher-written traces,
    plus logit KD where the teacher's top-k logprobs were stored."""
    import logging

    import torch

    from downsize.distill import SFTConfig, sft
    from downsize.train.loop import LoraSpec, TrainConfig

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if threads:
        torch.set_num_threads(threads)
    cfg = SFTConfig(train=TrainConfig(steps=steps, batch_size=batch_size, grad_accum=grad_accum, lr=lr, warmup_steps=warmup,
                                      checkpoint_every=checkpoint_every, seed=seed, mixed_precision=mixed_precision),
                    max_seq_len=max_seq_len, logprob_kd=logprob_kd,
                    lora=LoraSpec(r=lora_r, alpha=lora_alpha, quantize_base="nf4" if qlora else None) if lora_r else None)
    path = sft(model, data, cfg, out, resume=resume)
    card = json.loads((path / "distill_card.json").read_text())
    console.print(f"[green]wrote[/green] {path}: {card['examples']} conversations, {card['assistant_tokens']:,} assistant "
                  f"tokens, {card['steps']} steps, loss {card['final_metrics']['train_loss']:.4g}")


@app.command("generate")
def generate_cmd(
    teacher: str = typer.Option(..., help="openai:URL#MODEL (Ollama, vLLM, llama.cpp server) or a model reference (zoo:, HF dir, .gguf)"),
    out: Path = typer.Option(..., help="output chat JSONL (rejected traces go beside it, *.rejected.jsonl); rerun to resume"),
    prompts: Optional[Path] = typer.Option(None, help="prompt file: JSONL ({prompt|messages, expected?, needs_tools?}) or text, one per line"),
    codebase: Optional[Path] = typer.Option(None, help="repository: questions filled from it with ast, and the tool sandbox root"),
    n_codebase: int = typer.Option(100, help="codebase questions to draw from the templates"),
    n_negative: int = typer.Option(20, help="negative examples that need no tools (arithmetic, general knowledge)"),
    template: Optional[list[str]] = typer.Option(None, help="only these templates (repeatable)"),
    seed: int = typer.Option(0),
    in_flight: int = typer.Option(4, help="requests in flight (endpoint) or the batch size (local model)"),
    limit: Optional[int] = typer.Option(None, help="at most N prompts"),
    tools: bool = typer.Option(True, help="agent loop with list_files/read_file/grep when --codebase is given"),
    max_turns: int = typer.Option(4, help="model turns per trace"),
    max_tokens: int = typer.Option(256, help="tokens per model turn"),
    temperature: float = typer.Option(0.0),
    top_p: float = typer.Option(1.0),
    top_logprobs: int = typer.Option(0, help="store the top-k logprobs per token (for sparse logit KD)"),
    timeout: float = typer.Option(120.0, help="seconds per request"),
    retries: int = typer.Option(6, help="retries on 429/5xx/connection loss/malformed JSON"),
    as_json: bool = typer.Option(False, "--json"),
):
    """Generate teacher data: prompts from a codebase, tool-calling traces, any OpenAI-compatible server."""
    from downsize.generate import AgentConfig, GenerateConfig, GenParams, generate

    params = GenParams(max_tokens=max_tokens, temperature=temperature, top_p=top_p, seed=seed, top_logprobs=top_logprobs,
                       timeout_s=timeout, max_retries=retries, batch_size=in_flight)
    cfg = GenerateConfig(teacher=teacher, out=str(out), prompts=str(prompts) if prompts else None,
                         codebase=str(codebase) if codebase else None, n_codebase=n_codebase, n_negative=n_negative,
                         templates=tuple(template) if template else None, seed=seed, in_flight=in_flight, limit=limit,
                         tools=tools, params=params, agent=AgentConfig(max_turns=max_turns))
    summary = generate(cfg)
    for line in summary["bad_lines"]:
        err.print(f"[yellow]skipped[/yellow] {line}", highlight=False)
    if as_json:
        console.print_json(json.dumps(summary))
    else:
        t = Table("metric", "value")
        for k in ("tasks", "skipped_done", "written", "rejected", "failed", "remaining", "seconds", "prompts_per_s",
                  "completion_tok_per_s", "reasons", "out", "rejected_out"):
            t.add_row(k, str(summary.get(k)))
        console.print(t)
    if summary["stopped"]:
        err.print(f"[red]stopped early:[/red] {summary['stopped']}", highlight=False)
        raise typer.Exit(1)


@app.command("prune")
def prune_cmd(
    model: str = typer.Argument(..., help="model reference: HF directory, zoo:NAME, FILE.gguf or ollama:NAME"),
    method: str = typer.Option(..., help="depth, width, magnitude, wanda, sparsegpt or lowrank"),
    out: Path = typer.Option(..., help="output directory (a normal Hugging Face model + prune_report.json)"),
    targets: Optional[str] = typer.Option(None, help="sizes: 'ffn=1024 heads=4 hidden=256', 'params=0.5', 'remove=2', 'rank=64', 'hidden=256'"),
    sparsity: Optional[float] = typer.Option(None, help="unstructured ratio of zeros, e.g. 0.5"),
    nm: Optional[str] = typer.Option(None, help="N:M pattern, e.g. 2:4"),
    calib: str = typer.Option("zoo:stdlib", help="calibration data reference"),
    calib_samples: int = typer.Option(64, help="calibration sequences"),
    seq_len: int = typer.Option(256, help="calibration sequence length"),
    depth_score: str = typer.Option("bi", help="depth: bi (block influence) or ppl (perplexity increase)"),
    seed: int = typer.Option(0),
    as_json: bool = typer.Option(False, "--json", help="print the report as JSON"),
):
    """Prune a model: depth, width (Minitron), unstructured/N:M (magnitude, Wanda, SparseGPT), low-rank."""
    from downsize.prune import PruneConfig, prune_ref

    cfg = PruneConfig(method=method, targets=targets, sparsity=sparsity, nm=nm, calib_samples=calib_samples,
                      calib_seq_len=seq_len, depth_score=depth_score, seed=seed)
    report = prune_ref(model, out, cfg, calib)
    if as_json:
        console.print_json(json.dumps(report))
        return
    p = report["params"]
    console.print(f"[green]wrote[/green] {out}  ({method}: {p['before']:,} → {p['after']:,} parameters, "
                  f"{p['ratio']:.1%}; {report['wall_s']:.1f} s, peak RSS {report['peak_rss_mib']:.0f} MiB)")
    if "per_layer" in report:
        t = Table("layer", *[k for k in report["per_layer"][0] if k != "layer"])
        for row in report["per_layer"]:
            t.add_row(str(row["layer"]), *[f"{v:.1%}" for k, v in row.items() if k != "layer"])
        console.print(t)
    if report.get("note"):
        err.print(f"[yellow]note:[/yellow] {report['note']}", highlight=False)


# --- export (issue 5) ---
export_app = typer.Typer(no_args_is_help=True, help="Export to GGUF and Ollama (Modelfile with a converted chat template).")
app.add_typer(export_app, name="export")


def _print_export(result: dict, as_json: bool) -> None:
    if as_json:
        console.print_json(json.dumps(result, default=str))
        return
    t = Table("field", "value")
    for k, v in result.items():
        if isinstance(v, dict):
            v = ", ".join(f"{a}={b:.4g}" if isinstance(b, float) else f"{a}={b}" for a, b in v.items())
        t.add_row(k, f"{v:,.4f}" if isinstance(v, float) else str(v))
    console.print(t)


_RESCALE_HELP = ("undo the shrinkage of llama.cpp's block fits (row scales against the float model); "
                 "--no-rescale keeps llama.cpp's bytes")


@export_app.command("gguf")
def export_gguf_cmd(
    model: str = typer.Argument(..., help="model reference: HF directory or zoo:NAME"),
    out: Path = typer.Option(..., help="output .gguf file (written atomically)"),
    quant: str = typer.Option("F16", help="F32, F16, BF16, Q8_0, Q4_0, Q2_K … Q6_K, Q3_K_M, Q4_K_M, Q5_K_M, IQ4_XS …"),
    imatrix: Optional[Path] = typer.Option(None, help="llama.cpp importance matrix (GGUF) for the low-bit types"),
    calib: Optional[str] = typer.Option(None, help="compute the importance matrix from this data reference (e.g. zoo:stdlib)"),
    report: bool = typer.Option(False, help="measure perplexity delta, KL and top-1 against the HF model in llama.cpp"),
    report_data: str = typer.Option("zoo:stdlib", help="data reference for --report (validation split of zoo:stdlib)"),
    report_tokens: int = typer.Option(8192, help="tokens evaluated by --report"),
    rescale: bool = typer.Option(True, help=_RESCALE_HELP),
    as_json: bool = typer.Option(False, "--json"),
):
    """Export a model to GGUF (our converter; K-quants through llama.cpp's quantizer)."""
    from downsize.export.api import export_with_report

    _print_export(export_with_report(model, out, quant, imatrix=imatrix, calib=calib, report=report,
                                     report_data=report_data, report_tokens=report_tokens, rescale=rescale), as_json)


@app.command("quantize")
def quantize_cmd(
    src: Path = typer.Argument(..., help="input GGUF (F32, F16 or BF16)"),
    out: Path = typer.Option(..., help="output .gguf file"),
    quant: str = typer.Option("Q4_K_M", help="target type, e.g. Q4_K_M, Q3_K_M, Q8_0, IQ4_XS"),
    imatrix: Optional[Path] = typer.Option(None, help="llama.cpp importance matrix (GGUF)"),
    rescale: bool = typer.Option(True, help=_RESCALE_HELP),
    as_json: bool = typer.Option(False, "--json"),
):
    """Quantize a GGUF (K-quants with an importance matrix)."""
    from downsize.export.quantize import quantize_gguf

    _print_export(quantize_gguf(src, out, quant, imatrix=imatrix, rescale=rescale), as_json)


@export_app.command("ollama")
def export_ollama_cmd(
    model: str = typer.Argument(..., help="model reference: HF directory or zoo:NAME"),
    name: str = typer.Option(..., help="Ollama model name, e.g. coder-small"),
    out: Path = typer.Option(Path("ollama"), help="folder for the GGUF and the Modelfile"),
    quant: str = typer.Option("Q4_K_M", help="GGUF type (see `downsize export gguf --help`)"),
    imatrix: Optional[Path] = typer.Option(None, help="llama.cpp importance matrix (GGUF) for the low-bit types"),
    template_style: Optional[str] = typer.Option(None, help="force a chat format: chatml, llama3, mistral, gemma, phi3"),
    num_ctx: Optional[int] = typer.Option(None, help="PARAMETER num_ctx (default: the model's context length)"),
    create: bool = typer.Option(True, help="run `ollama create` when ollama is on PATH"),
    rescale: bool = typer.Option(True, help=_RESCALE_HELP),
    as_json: bool = typer.Option(False, "--json"),
):
    """Export to GGUF plus an Ollama Modelfile (TEMPLATE converted from the Jinja chat template)."""
    from downsize.export.ollama import export_ollama

    r = export_ollama(model, name, out, quant, imatrix=imatrix, template_style=template_style, num_ctx=num_ctx, create=create,
                      rescale=rescale)
    _print_export(r, as_json)
    if not r["created"] and not as_json:
        console.print(f"ollama is not on PATH; register the model with:\n  {r['command']}", markup=False, highlight=False)


@export_app.command("lora")
def export_lora_cmd(
    adapter: Path = typer.Argument(..., help="PEFT LoRA adapter folder (adapter_config.json + adapter_model.safetensors)"),
    base: str = typer.Option(..., help="the base model it was trained on: HF directory or zoo:NAME"),
    out: Path = typer.Option(..., help="output GGUF adapter (use with `downsize convert --adapter` or llama.cpp --lora)"),
    as_json: bool = typer.Option(False, "--json"),
):
    """Export a LoRA adapter as a GGUF adapter (Ollama ADAPTER, llama.cpp --lora)."""
    from downsize.export.lora import export_lora_gguf

    _print_export(export_lora_gguf(adapter, base, out), as_json)


@app.command("convert")
def convert_cmd(
    gguf: Path = typer.Option(..., "--gguf", help="an existing GGUF file"),
    name: str = typer.Option(..., help="Ollama model name"),
    out: Optional[Path] = typer.Option(None, help="folder for the Modelfile (default: beside the GGUF)"),
    template_style: Optional[str] = typer.Option(None, help="force a chat format: chatml, llama3, mistral, gemma, phi3"),
    adapter: Optional[Path] = typer.Option(None, help="a GGUF LoRA adapter (Modelfile ADAPTER)"),
    num_ctx: Optional[int] = typer.Option(None, help="PARAMETER num_ctx (default: the GGUF's context length)"),
    create: bool = typer.Option(True, help="run `ollama create` when ollama is on PATH"),
    as_json: bool = typer.Option(False, "--json"),
):
    """Make an Ollama model (Modelfile with a converted TEMPLATE) from a GGUF you already have."""
    from downsize.export.ollama import convert_gguf

    r = convert_gguf(gguf, name, out, template_style=template_style, adapter=adapter, num_ctx=num_ctx, create=create)
    _print_export(r, as_json)
    if not r["created"] and not as_json:
        console.print(f"ollama is not on PATH; register the model with:\n  {r['command']}", markup=False, highlight=False)
# --- end export (issue 5) ---


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
