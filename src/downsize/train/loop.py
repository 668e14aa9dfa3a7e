"""The one training loop: distillation, plain SFT, LoRA and zoo pre-training all run through ``train``.

    >>> import numpy as np
    >>> from downsize.data.packing import PackedDataset
    >>> from downsize.models.refs import load_model
    >>> model, tok = load_model("zoo:coder-teacher-qwen")
    >>> dataset = PackedDataset(np.array(tok.encode("def add(a, b):\\n    return a + b\\n" * 40)), seq_len=32)
    >>> cfg = TrainConfig(steps=2, batch_size=2, lr=1e-3, warmup_steps=1, mixed_precision="no", progress=False)
    >>> r = train(model, lm_loss, dataset, cfg, out_dir="runs/x")          # checkpoints in runs/x/checkpoints
    >>> r.steps, r.tokens, r.precision
    (2, 128, 'fp32')
    >>> from dataclasses import replace
    >>> train(model, lm_loss, dataset, replace(cfg, steps=3), out_dir="runs/x", resume=True).steps
    resuming from runs/x/checkpoints/step-00000002 at step 2
    3
    >>> # multi-GPU: `accelerate launch -m downsize.cli distill ...` or torchrun; nothing here changes

``loss_fn(model, batch) -> (loss, metrics)`` is the only thing that differs between uses.
LoRA is a property of the model, not of the loop: ``apply_lora(model, LoraSpec(r=16))`` before
``train`` (only the adapters are trainable and checkpointed), ``merge_lora(model)`` after.
``data.batch(step, batch_size, rank, world)`` must be a pure function of its arguments, which
makes resuming exact: a checkpoint stores weights, optimiser, scheduler and RNG, and the data
position is just the step number.

Why this module is long: the loop, its checkpoint format and its resume rules (which must agree), LoRA and
the trackers it drives are the one training engine every stage uses.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Protocol

import torch
from safetensors.torch import load_file, save_file

from downsize.errors import DownsizeError
from downsize.io import atomic_dir, write_json_atomic, write_text_atomic

log = logging.getLogger(__name__)

LossFn = Callable[[torch.nn.Module, dict], tuple[torch.Tensor, dict[str, float]]]

CHECKPOINTS = "checkpoints"
LATEST = "latest.json"
METRICS = "metrics.jsonl"


class BatchSource(Protocol):
    def batch(self, step: int, batch_size: int, rank: int = 0, world: int = 1) -> dict[str, torch.Tensor]: ...


# glibc malloc serves blocks above its mmap threshold (128 KiB, raised dynamically only up to the size of
# the last block freed) from fresh mmaps, so every step's multi-MiB temporaries (logits chunks, activations)
# are page-faulted in and zeroed anew: on CPU that cost more than the arithmetic on them (measured: the
# distillation loss 140 -> 88 ms a step). Serving them from the heap and not trimming it reuses the pages.
_MALLOC_MMAP_THRESHOLD = 32 * 2**20  # glibc's ceiling for this setting on 64-bit
_MALLOC_TRIM_THRESHOLD = 2**30
_allocator_tuned = False


def tune_cpu_allocator() -> bool:
    """Set glibc's malloc thresholds once per process (Linux/glibc only; False elsewhere or when they were
    given by the user through MALLOC_MMAP_THRESHOLD_/MALLOC_TRIM_THRESHOLD_)."""
    global _allocator_tuned
    if _allocator_tuned:
        return True
    if os.environ.get("MALLOC_MMAP_THRESHOLD_") or os.environ.get("MALLOC_TRIM_THRESHOLD_"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
        ok = libc.mallopt(M_MMAP_THRESHOLD, _MALLOC_MMAP_THRESHOLD) and libc.mallopt(M_TRIM_THRESHOLD, _MALLOC_TRIM_THRESHOLD)
    except (OSError, AttributeError):
        return False
    _allocator_tuned = bool(ok)
    return _allocator_tuned


@dataclass(frozen=True)
class TrainConfig:
    steps: int
    batch_size: int = 8  # per process, per micro-step
    grad_accum: int = 1
    lr: float = 1e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 50
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    max_grad_norm: float = 1.0
    mixed_precision: str = "auto"  # "auto": bf16 autocast where the hardware computes in bf16, else fp32; "bf16"; "fp32"/"no"
    seed: int = 0
    checkpoint_every: int = 0  # 0: only at the end
    keep_checkpoints: int = 2
    log_every: int = 10
    progress: bool = True
    # experiment trackers through accelerate: () / "none", "tensorboard", "wandb" or "tensorboard,wandb";
    # TensorBoard event files go to OUT/runs/downsize, W&B runs to OUT/wandb (WANDB_MODE=offline works)
    report_to: tuple[str, ...] | str = ()

    def __post_init__(self):
        if self.steps < 1:
            raise DownsizeError(f"steps must be >= 1, got {self.steps}")
        object.__setattr__(self, "report_to", parse_report_to(self.report_to))
        from downsize.hardware import normalise

        normalise(self.mixed_precision)  # refuses anything but auto, bf16, fp32 (or "no")


class TrainingDiverged(DownsizeError):
    pass


LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class LoraSpec:
    """Low-rank adapters on the linear layers (PEFT); ``quantize_base="nf4"`` is QLoRA (CUDA + bitsandbytes)."""

    r: int = 16
    alpha: int = 32
    dropout: float = 0.0
    target_modules: tuple[str, ...] = LORA_TARGETS
    quantize_base: str | None = None  # None or "nf4"

    def __post_init__(self):
        if self.r < 1:
            raise DownsizeError(f"LoRA rank must be >= 1, got {self.r}", hint="typical ranks are 8-64")
        if self.quantize_base not in (None, "nf4"):
            raise DownsizeError(f"quantize_base {self.quantize_base!r} is not supported", hint="use None (LoRA) or 'nf4' (QLoRA)")
        object.__setattr__(self, "target_modules", tuple(self.target_modules))


def apply_lora(model: torch.nn.Module, spec: LoraSpec) -> torch.nn.Module:
    """Wrap ``model`` with PEFT LoRA adapters; only the adapters stay trainable."""
    from peft import LoraConfig, get_peft_model

    present = {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    targets = [t for t in spec.target_modules if t in present]
    if not targets:
        raise DownsizeError(f"none of the LoRA target modules {list(spec.target_modules)} is a linear layer of this model",
                            hint=f"its linear layers are named {sorted(present)}")
    if spec.quantize_base:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    cfg = LoraConfig(r=spec.r, lora_alpha=spec.alpha, lora_dropout=spec.dropout, target_modules=targets,
                     bias="none", task_type="CAUSAL_LM")
    return get_peft_model(model, cfg)


def merge_lora(model: torch.nn.Module) -> torch.nn.Module:
    """Fold LoRA adapters into the base weights and return the plain model (no-op without adapters)."""
    if hasattr(model, "merge_and_unload"):
        return model.merge_and_unload()
    return model


TRACKERS = {"tensorboard": ("tensorboard", "tensorboard is in downsize's default install; reinstall it: "
                                           "pip install tensorboard"),
            "wandb": ("wandb", "W&B is optional: pip install wandb (WANDB_MODE=offline to log without an account)")}
TRACKER_PROJECT = "downsize"  # accelerate's project name: TensorBoard writes OUT/runs/downsize
TRACKER_DIR = "runs"


def parse_report_to(value) -> tuple[str, ...]:
    """'tensorboard,wandb' / ['wandb'] / 'none' / None -> a tuple of known tracker names (checked installed)."""
    import importlib.util

    if value is None:
        return ()
    names = [v.strip().lower() for v in (value.split(",") if isinstance(value, str) else value) if v and v.strip()]
    names = [n for n in names if n != "none"]
    for n in names:
        if n not in TRACKERS:
            raise DownsizeError(f"unknown tracker {n!r} in report_to", hint=f"choose from {', '.join(TRACKERS)} or none")
        module, hint = TRACKERS[n]
        if importlib.util.find_spec(module) is None:
            raise DownsizeError(f"report_to={n} but the {module} package is not installed", hint=hint)
    return tuple(dict.fromkeys(names))


def _tracker_config(cfg: TrainConfig) -> dict:
    """The config as hyperparameters trackers accept (TensorBoard's hparams take only scalars and strings)."""
    return {k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in asdict(cfg).items()}


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warmup then cosine decay to ``min_lr_ratio * lr``; ``step`` counts optimiser steps from 0."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * cosine)


def _param_groups(model: torch.nn.Module, weight_decay: float):
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "norm" in name else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _adamw(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW, fused (one kernel over all parameters: 5 ms a step against 21-36 ms for the per-tensor loop on a 3.7M
    student, one CPU thread) where torch has the fused kernel for the parameters' device and dtype."""
    groups = lambda: _param_groups(model, cfg.weight_decay)  # noqa: E731
    try:
        return torch.optim.AdamW(groups(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=True)
    except (RuntimeError, ValueError):
        return torch.optim.AdamW(groups(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=False)


def _trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    return {k: v.detach().contiguous().clone() for k, v in model.state_dict().items() if k in names}


def _save_checkpoint(out: Path, step: int, model, optimizer, cfg: TrainConfig, extra: dict) -> None:
    ckdir = out / CHECKPOINTS
    dest = ckdir / f"step-{step:08d}"
    with atomic_dir(dest) as tmp:
        save_file(_trainable_state(model), str(tmp / "trainable.safetensors"))
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save({"torch": torch.get_rng_state()}, tmp / "rng.pt")
        write_json_atomic(tmp / "state.json", {"step": step, "config": asdict(cfg), **extra})
    write_json_atomic(ckdir / LATEST, {"step": step, "path": dest.name})
    done = sorted(p for p in ckdir.glob("step-*") if p.is_dir())
    for old in done[: -cfg.keep_checkpoints]:
        shutil.rmtree(old, ignore_errors=True)


def latest_checkpoint(out: str | os.PathLike) -> Path | None:
    pointer = Path(out) / CHECKPOINTS / LATEST
    if not pointer.exists():
        return None
    path = pointer.parent / json.loads(pointer.read_text())["path"]
    return path if path.exists() else None


def check_fresh_start(out: str | os.PathLike, resume: bool, overwrite: bool = False) -> None:
    """A run without ``resume`` over a folder that holds a checkpoint would silently throw it away: refuse,
    unless ``overwrite`` (then the old checkpoints and log are removed and training starts at step 0)."""
    ck = latest_checkpoint(out)
    if resume or ck is None:
        return
    if not overwrite:
        step = json.loads((Path(out) / CHECKPOINTS / LATEST).read_text()).get("step")
        raise DownsizeError(f"{out} holds a checkpoint at step {step} of an earlier run ({ck})",
                            hint="pass --resume to continue from it, or --overwrite to start again from step 0")
    shutil.rmtree(Path(out) / CHECKPOINTS, ignore_errors=True)
    with contextlib.suppress(FileNotFoundError):
        (Path(out) / METRICS).unlink()


def _truncate_log(path: Path, step: int) -> None:
    """Keep the log lines up to ``step``: a resumed run writes the later ones again (no duplicate lines)."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines(keepends=True):
        try:
            if json.loads(line)["step"] <= step:
                kept.append(line)
        except (ValueError, KeyError, TypeError):
            continue  # a torn last line of a killed run
    write_text_atomic(path, "".join(kept))


def _load_checkpoint(path: Path, model, optimizer) -> dict:
    from downsize.models.checks import check_safetensors

    check_safetensors(path / "trainable.safetensors")  # a damaged checkpoint is named, not a bare SafetensorError
    state = load_file(str(path / "trainable.safetensors"))
    missing = set(_trainable_state(model)) - set(state)
    if missing:
        raise DownsizeError(
            f"checkpoint {path} lacks {len(missing)} trainable tensors (e.g. {sorted(missing)[0]})",
            hint="it was written for another model or trainable set; start without --resume or pick the right --out",
        )
    model.load_state_dict(state, strict=False)
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True))
    torch.set_rng_state(torch.load(path / "rng.pt", weights_only=True)["torch"])
    return json.loads((path / "state.json").read_text())


@dataclass
class TrainResult:
    steps: int
    tokens: int
    wall_s: float
    final_loss: float
    metrics: dict[str, float] = field(default_factory=dict)
    precision: str = ""  # what "auto" resolved to: "bf16" or "fp32"


def train(
    model: torch.nn.Module,
    loss_fn: LossFn,
    data: BatchSource,
    cfg: TrainConfig,
    out_dir: str | os.PathLike,
    resume: bool = False,
    on_log: Callable[[dict], None] | None = None,
    time_budget_s: float | None = None,
) -> TrainResult:
    """Train ``model`` in place for ``cfg.steps`` optimiser steps; checkpoints go to ``out_dir/checkpoints``.

    With ``time_budget_s``, ``cfg.steps`` is re-resolved from the throughput measured during the
    first half of warmup. Warmup does not depend on the total, so the run is identical to one
    started with the resolved ``steps``; ``TrainResult.steps`` reports it.
    """
    from accelerate import Accelerator

    from downsize.console import progress
    from downsize.hardware import ensure_threads, resolve_precision
    from downsize.models.attention import fp32_attention_backward

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if not torch.cuda.is_available():
        tune_cpu_allocator()
        ensure_threads()
    from accelerate.state import AcceleratorState

    precision = resolve_precision(cfg.mixed_precision)
    log.info("precision: %s (%s)", precision.name, precision.reason)
    mixed = precision.autocast
    if AcceleratorState._shared_state.get("_mixed_precision", mixed) != mixed:
        # accelerate keeps one global state per process; a second train() call in the same process (a
        # pipeline, a benchmark) may ask for another precision. The process group itself is kept.
        AcceleratorState._reset_state(reset_partial_state=False)
    # cpu=True on machines without a GPU is what lets torchrun/accelerate launch run several CPU processes (gloo)
    trackers = {"log_with": list(cfg.report_to), "project_dir": str(out / TRACKER_DIR)} if cfg.report_to else {}
    acc = Accelerator(mixed_precision=mixed, gradient_accumulation_steps=1, cpu=not torch.cuda.is_available(),
                      **trackers)
    if cfg.report_to:
        acc.init_trackers(TRACKER_PROJECT, config=_tracker_config(cfg),
                          init_kwargs={"wandb": {"dir": str(out), "name": out.name}} if "wandb" in cfg.report_to else {})
    torch.manual_seed(cfg.seed)
    optimizer = _adamw(model, cfg)
    model, optimizer = acc.prepare(model, optimizer)
    raw = acc.unwrap_model(model)

    start = 0
    tokens = 0
    if resume:
        ck = latest_checkpoint(out)
        if ck is not None:
            st = _load_checkpoint(ck, raw, optimizer)
            start, tokens = st["step"], st.get("tokens", 0)
            if time_budget_s:  # the step count was resolved by the interrupted run
                cfg = replace(cfg, steps=st["config"]["steps"], checkpoint_every=st["config"]["checkpoint_every"])
            acc.print(f"resuming from {ck} at step {start}")
    metrics_path = out / METRICS
    if start == 0 and metrics_path.exists() and acc.is_main_process:
        metrics_path.unlink()
    elif start and acc.is_main_process:
        _truncate_log(metrics_path, start)

    rank, world = acc.process_index, acc.num_processes
    bar = progress(total=cfg.steps, initial=start, enabled=cfg.progress and acc.is_main_process, leave=True,
                   desc="training", unit="step")
    t0 = time.perf_counter()
    tokens_at_start = tokens
    last_loss = float("nan")
    last_metrics: dict[str, float] = {}
    # bf16 on a CPU: attention that trains is computed in fp32 (its bf16 backward kernel is the slower one there)
    attention = fp32_attention_backward if precision.name == "bf16" and acc.device.type == "cpu" else contextlib.nullcontext
    model.train()
    measure_at = max(1, cfg.warmup_steps // 2)
    step = start
    while step < cfg.steps:
        if time_budget_s and step == measure_at and start < measure_at:
            per_step = (time.perf_counter() - t0) / (step - start)
            cfg = replace(cfg, steps=max(cfg.warmup_steps + 1, int(time_budget_s / per_step)))
            if not cfg.checkpoint_every or cfg.checkpoint_every > cfg.steps:
                cfg = replace(cfg, checkpoint_every=max(1, cfg.steps // 20))
            bar.total = cfg.steps
            acc.print(f"time budget {time_budget_s / 60:.1f} min at {per_step:.2f} s/step: {cfg.steps} steps")
        for g in optimizer.param_groups:
            g["lr"] = lr_at(step, cfg)
        loss_sum = 0.0
        agg: dict[str, float] = {}
        tokens_before = tokens
        for micro in range(cfg.grad_accum):
            batch = data.batch(step * cfg.grad_accum + micro, cfg.batch_size, rank, world)
            batch = {k: v.to(acc.device) if torch.is_tensor(v) else v for k, v in batch.items()}
            try:
                with acc.autocast(), attention():
                    loss, m = loss_fn(model, batch)
            except DownsizeError as e:
                # a failure that a rerun can get past (a teacher server that went down): keep the steps done so far
                if getattr(e, "resumable", False) and step > start and acc.is_main_process:
                    _save_checkpoint(out, step, raw, optimizer, cfg, {"tokens": tokens_before, "loss": last_loss})
                raise
            if not torch.isfinite(loss):
                ck = latest_checkpoint(out)
                raise TrainingDiverged(
                    f"loss became {loss.item()} at step {step}",
                    hint=f"the last good checkpoint is {ck or 'none (no checkpoint written yet)'}; "
                    "lower --lr, raise warmup, or check the data for empty or corrupt batches",
                )
            acc.backward(loss / cfg.grad_accum)
            loss_sum += loss.item() / cfg.grad_accum
            for k, v in m.items():
                agg[k] = agg.get(k, 0.0) + v / cfg.grad_accum
            tokens += int(batch["input_ids"].numel()) * world
        if cfg.max_grad_norm > 0:
            norm = acc.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            if norm is not None and not torch.isfinite(torch.as_tensor(norm)):
                ck = latest_checkpoint(out)
                raise TrainingDiverged(
                    f"the gradient norm became {float(norm)} at step {step} (loss {loss_sum:.4f})",
                    hint=f"the last good checkpoint is {ck or 'none (no checkpoint written yet)'}; nothing was "
                    "written after it; lower --lr or raise warmup, then --resume")
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        last_loss, last_metrics = loss_sum, agg
        done = step + 1
        elapsed = time.perf_counter() - t0
        tok_s = (tokens - tokens_at_start) / max(elapsed, 1e-9)
        bar.update(1)
        bar.set_postfix(loss=f"{loss_sum:.4f}", tok_s=f"{tok_s:,.0f}")
        if done % cfg.log_every == 0 or done == cfg.steps:
            if world > 1:  # log the global mean, not rank 0's share (every rank takes part)
                loss_sum = acc.reduce(torch.tensor(loss_sum, device=acc.device), reduction="mean").item()
                last_loss = loss_sum
        if acc.is_main_process and (done % cfg.log_every == 0 or done == cfg.steps):
            rec = {"step": done, "loss": loss_sum, "lr": lr_at(step, cfg), "tokens": tokens, "tok_s": tok_s, **agg}
            with open(metrics_path, "a") as f:  # one whole line per write
                f.write(json.dumps(rec) + "\n")
            if cfg.report_to:
                acc.log({k: v for k, v in rec.items() if k != "step" and isinstance(v, (int, float))}, step=done)
            if on_log:
                on_log(rec)
        if cfg.checkpoint_every and done % cfg.checkpoint_every == 0 and done < cfg.steps:
            acc.wait_for_everyone()
            if acc.is_main_process:
                _save_checkpoint(out, done, raw, optimizer, cfg, {"tokens": tokens, "loss": loss_sum})
            acc.wait_for_everyone()
        step += 1
    bar.close()
    if cfg.report_to:
        acc.end_training()  # flushes and closes the trackers' files
    acc.wait_for_everyone()
    if acc.is_main_process:
        _save_checkpoint(out, cfg.steps, raw, optimizer, cfg, {"tokens": tokens, "loss": last_loss})
    return TrainResult(cfg.steps, tokens, time.perf_counter() - t0, last_loss, last_metrics, precision.name)


def lm_loss(model: torch.nn.Module, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
    """Plain next-token cross entropy (labels = -100 are ignored)."""
    out = model(input_ids=batch["input_ids"], attention_mask=batch.get("attention_mask"), labels=batch["labels"])
    return out.loss, {}
