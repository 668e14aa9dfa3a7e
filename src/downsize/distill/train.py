"""Logit distillation as a stage engine: the teacher online, from an offline top-k cache or behind a server, the
student from a reference or the teacher's config, the loss from ``losses``, all on the one training loop.

    >>> cfg = DistillConfig(train=TrainConfig(steps=2, batch_size=2, lr=1e-3, warmup_steps=1, mixed_precision="no",
    ...                                       progress=False), loss=LossSpec("fkl"), seq_len=32, val_tokens=0)
    >>> out = distill("zoo:coder-teacher-qwen", StudentSpec.derived(num_hidden_layers=1), "zoo:stdlib", cfg, "student")
    >>> (out / "distill_card.json").exists()
    True

The user-facing settings are the distill stage's config (``downsize.stages.distill``), which builds this
module's ``DistillConfig`` in one place. The output directory is a normal Hugging Face model with
``README.md`` and ``distill_card.json`` (``downsize.distill.save``); checkpoints live in
``OUT.work/checkpoints``, ``resume=True`` continues exactly, and they are removed once the output is saved
(``keep_work=True`` keeps them; ``metrics.jsonl`` stays). SFT is ``downsize.distill.supervised``, the student
``downsize.distill.student``.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from downsize.distill.ahead import with_teacher_ahead
from downsize.distill.losses import IGNORE_INDEX, Head, LossSpec, kd_loss, uld_loss
from downsize.distill.onpolicy import ServerSpec, is_server
from downsize.distill.save import SAVE_DTYPES, _params, save_model
from downsize.distill.student import StudentSpec, _merge, build_student, derive_config
from downsize.distill.teacher import (
    OnlineTeacher,
    TopKCacheDataset,
    cached_topk,
    final_hidden,
    lm_head,
    sample,
    teacher_precision,
)
from downsize.distill.vocab import VocabPlan, offset_pairs, plan_vocab
from downsize.errors import DownsizeError
from downsize.io import KIND_DISTILL, check_output
from downsize.models.placement import Placement, load_placed, place, to_model
from downsize.train.loop import CHECKPOINTS, LoraSpec, TrainConfig, apply_lora, check_fresh_start, train

log = logging.getLogger(__name__)

WORK_SUFFIX = ".work"
VAL_TOKENS = 32768  # default size of the closing validation pass
VAL_CHUNK_ROWS = 512  # positions per LM-head chunk there: (512, V) fp32 is 311 MB at V = 151,936


# ---- data -----------------------------------------------------------------------------------

def load_stream(tokenizer, data: str, split: str | None = None) -> np.ndarray:
    """The training stream of a data reference (downsize.data.stream, purpose "train")."""
    from downsize.data.stream import token_stream
    from downsize.errors import reading

    with reading(data):
        return token_stream(tokenizer, data, "train", split)


class WindowData:
    """``PackedDataset`` over the first ``windows`` windows of a stream (all when None)."""

    def __init__(self, stream: np.ndarray, seq_len: int, seed: int, windows: int | None = None):
        from downsize.data.packing import PackedDataset

        if windows:
            stream = stream[: windows * seq_len + 1]
        self.inner = PackedDataset(stream, seq_len, seed)

    def batch(self, step, batch_size, rank=0, world=1):
        return self.inner.batch(step, batch_size, rank, world)


class _Tagged:
    """Adds the step number to each batch (seeds on-policy sampling, so resuming is exact)."""

    def __init__(self, inner):
        self.inner = inner

    def batch(self, step, batch_size, rank=0, world=1):
        b = self.inner.batch(step, batch_size, rank, world)
        b["step"] = torch.tensor([step, rank])
        return b


# ---- configs --------------------------------------------------------------------------------

@dataclass(frozen=True)
class OnPolicy:
    """GKD (Agarwal et al. 2024): with probability ``lmbda`` a batch's continuations are sampled from the
    student and scored by the teacher; otherwise the data is used, or with ``seq_kd`` continuations the
    teacher samples (sequence-level KD, Kim & Rush 2016)."""

    lmbda: float = 0.5
    seq_kd: bool = False
    prompt_len: int = 32
    new_tokens: int = 64
    temperature: float = 1.0

    def __post_init__(self):
        if not 0.0 <= self.lmbda <= 1.0:
            raise DownsizeError(f"lmbda must be in [0, 1], got {self.lmbda}", hint="0: off-policy (data), 1: always student samples")
        if self.prompt_len < 1 or self.new_tokens < 1:
            raise DownsizeError("prompt_len and new_tokens must be >= 1", hint="e.g. prompt_len=32, new_tokens=64")


@dataclass(frozen=True)
class DistillConfig:
    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=200))
    loss: LossSpec = field(default_factory=LossSpec)
    seq_len: int = 256
    windows: int | None = None  # use only the first N packed windows of the data (a fixed token pool)
    split: str | None = None  # default: "train" for zoo:stdlib, "all" for user data
    teacher_dtype: str = "auto"  # online teacher weights: "auto" (as the training precision resolves), "bf16", "fp32"
    teacher_device: str = "auto"  # where the teacher runs: models.placement (auto = the student's GPU, else CPU)
    cache: str | None = None  # a top-k teacher cache directory (offline KD; the teacher is never loaded)
    on_policy: OnPolicy | None = None
    vocab_align: str = "auto"
    cross_tokenizer: str = "error"  # or "uld"
    lora: LoraSpec | None = None
    head: str = "chunked"  # "chunked": LM head applied chunk by chunk inside the loss; "logits": the model's logits (FSDP)
    save_dtype: str = "bfloat16"
    server: ServerSpec = field(default_factory=ServerSpec)  # a teacher behind openai:URL#MODEL (distill.onpolicy)
    val_tokens: int = VAL_TOKENS  # closing validation perplexity on this many zoo:stdlib validation tokens; 0 = off
    keep_work: bool = False  # keep OUT.work/checkpoints after a successful save; by default they are removed
    teacher_ahead: str = "auto"  # "auto" | "on" | "off": the online teacher's next forward overlapped with this step

    def __post_init__(self):
        from downsize.hardware import normalise

        normalise(self.teacher_dtype)
        if self.val_tokens < 0:
            raise DownsizeError(f"val_tokens must be >= 0, got {self.val_tokens}", hint="0 turns the validation pass off")
        Placement(self.teacher_device)  # validates the device
        if self.head not in ("chunked", "logits"):
            raise DownsizeError(f"head {self.head!r} not supported", hint="use chunked (default) or logits (for FSDP)")
        if self.save_dtype not in SAVE_DTYPES:
            raise DownsizeError(f"save_dtype {self.save_dtype!r} not supported", hint=f"choose one of {', '.join(SAVE_DTYPES)}")
        if self.cache and self.on_policy:
            raise DownsizeError("on-policy distillation needs the live teacher to score new samples, not a cache",
                                hint="drop --cache or --lmbda")
        if self.cache and self.cross_tokenizer == "uld":
            raise DownsizeError("cross-tokenizer ULD needs the live teacher", hint="drop --cache")
        if self.teacher_ahead not in ("auto", "on", "off"):
            raise DownsizeError(f"teacher_ahead {self.teacher_ahead!r} not supported", hint="choose auto, on or off")
        if self.teacher_ahead == "on" and self.on_policy is not None:
            raise DownsizeError("teacher_ahead: on needs batches known before their step, and on-policy or sequence-KD "
                                "batches are sampled during it", hint="use teacher_ahead: auto (off for these) or off")


# ---- loss functions for the loop ------------------------------------------------------------

def _student_rows(model, ids: torch.Tensor, cfg: DistillConfig):
    """Student outputs for positions 0..T-2 as a Head (chunked) or Logits, flattened to rows."""
    from downsize.distill.losses import Logits

    if cfg.head == "logits":
        logits = model(input_ids=ids, use_cache=False).logits[:, :-1]
        return Logits(logits.reshape(-1, logits.shape[-1]))
    h = final_hidden(model, ids)[:, :-1]  # (B, T-1, H)
    tmpl = lm_head(model)
    return Head(h.reshape(-1, h.shape[-1]), tmpl.weight, tmpl.bias, tmpl.softcap)


def make_kd_loss(cfg: DistillConfig, teacher: OnlineTeacher | None, plan: VocabPlan):
    """``loss_fn(model, batch)`` for the loop: online or cached teacher, optional on-policy sampling."""
    spec = cfg.loss
    op = cfg.on_policy

    def loss_fn(model, batch):
        ids, labels = batch["input_ids"], batch["labels"]
        metrics: dict[str, float] = {}
        if op is not None:
            step, rank = (int(x) for x in batch["step"].tolist())
            g = torch.Generator().manual_seed(hash((cfg.train.seed, step, rank)) % (2 ** 63))
            u = torch.rand((), generator=g).item()
            if u < op.lmbda or op.seq_kd:
                who = model if u < op.lmbda else teacher.model
                prompt = ids[:, : op.prompt_len]
                ids = sample(who, prompt, op.new_tokens, g, temperature=op.temperature)
                labels = ids.clone()
                labels[:, : op.prompt_len] = IGNORE_INDEX  # prompt tokens are not targets
                metrics["on_policy" if u < op.lmbda else "seq_kd"] = 1.0
        student = _student_rows(model, ids, cfg)
        tgt = labels[:, 1:].reshape(-1)
        if "teacher_logp" in batch:
            t = cached_topk(batch)
        elif "teacher_ahead" in batch and ids is batch["input_ids"]:  # computed while the last step ran (TeacherAhead)
            t = batch["teacher_ahead"].result()
        else:
            t = teacher.rows(ids)
            if cfg.head == "logits":
                from downsize.distill.losses import Logits

                t = Logits(Head.compute(*t.tensors(0, len(t))))
        loss, parts = kd_loss(student, t, tgt, spec, vocab=plan.shared)
        metrics.update(kd=parts["kd"], ce=parts["ce"])
        return loss, metrics

    return loss_fn


def make_uld_loss(cfg: DistillConfig, teacher: OnlineTeacher, teacher_tok, student_tok):
    """Cross-tokenizer loss: the batch's text is re-tokenised by both tokenizers; ULD on aligned positions,
    mixed with the student's cross entropy by ``kd_ratio``."""
    spec = cfg.loss

    def loss_fn(model, batch):
        texts = student_tok.batch_decode(batch["input_ids"], skip_special_tokens=False)
        rows = [offset_pairs(t, teacher_tok, student_tok, cfg.seq_len * 2, cfg.seq_len) for t in texts]

        def pad(seqs):
            T = max(len(s) for s in seqs)
            out = torch.full((len(seqs), T), 0, dtype=torch.long)
            mask = torch.zeros((len(seqs), T), dtype=torch.long)
            for i, s in enumerate(seqs):
                out[i, : len(s)], mask[i, : len(s)] = s, 1
            return out, mask

        t_ids, t_mask = pad([r[0] for r in rows])
        s_ids, s_mask = pad([r[1] for r in rows])
        s_ids, s_mask = to_model(s_ids, model), to_model(s_mask, model)
        s_h = final_hidden(model, s_ids, s_mask)  # (B, Ts, H)
        with torch.no_grad():
            t_h = final_hidden(teacher.model, to_model(t_ids, teacher.model), to_model(t_mask, teacher.model))
        ti = torch.cat([r[2][:, 0] + b * t_ids.shape[1] for b, r in enumerate(rows)])
        si = torch.cat([r[2][:, 1] + b * s_ids.shape[1] for b, r in enumerate(rows)])
        s_head, t_head = lm_head(model), lm_head(teacher.model)
        S = Head(s_h.reshape(-1, s_h.shape[-1])[si], s_head.weight, s_head.bias, s_head.softcap)
        Tt = Head(t_h.reshape(-1, t_h.shape[-1])[ti], t_head.weight, t_head.bias, t_head.softcap)
        kd = uld_loss(S, Tt, spec.temperature, spec.chunk_size)
        labels = s_ids.masked_fill(s_mask == 0, IGNORE_INDEX)
        ce_spec = replace(spec, kd_ratio=0.0, name="fkl")
        rows_s = Head(s_h[:, :-1].reshape(-1, s_h.shape[-1]), s_head.weight, s_head.bias, s_head.softcap)
        ce, _ = kd_loss(rows_s, rows_s, labels[:, 1:].reshape(-1), ce_spec)
        loss = spec.kd_ratio * kd + (1 - spec.kd_ratio) * ce
        return loss, {"kd": float(kd.detach()), "ce": float(ce.detach()), "aligned": float(len(si))}

    return loss_fn


# ---- the stages ------------------------------------------------------------------------------

def distill(teacher_ref, student, data_ref: str, cfg: DistillConfig, out_dir: str | os.PathLike,
            resume: bool = False, eval_tokens: int | None = None, overwrite: bool = False) -> Path:
    """Distil ``teacher_ref`` into ``student`` on ``data_ref``; returns the output HF directory.

    ``student``: a ``StudentSpec``, a model reference string (or ``teacher:field=value,...``), an
    ``nn.Module`` (sharing the teacher's tokenizer), a ``(model, tokenizer)`` pair or a ``PretrainedConfig``. With ``cfg.cache`` the teacher is read from an offline
    top-k cache (``teacher_ref`` is then only recorded, and may be None). ``eval_tokens`` overrides
    ``cfg.val_tokens`` (the closing validation pass; 0 = off).
    """
    from downsize.data.refs import resolve_data

    out = Path(out_dir)
    work = out.with_name(out.name + WORK_SUFFIX)
    check_output(out, KIND_DISTILL, overwrite)  # before hours of training, not after
    check_fresh_start(work, resume, overwrite)
    t0 = time.time()
    teacher = teacher_tok = gen_config = None
    if not cfg.cache and isinstance(data_ref, str):
        resolve_data(data_ref)  # a missing dataset or unusable column fails here, before any model loads
    teacher_dtype = cfg.teacher_dtype
    if cfg.cache:
        data = TopKCacheDataset(cfg.cache, seed=cfg.train.seed)
        meta = data.meta
        if meta["seq_len"] != cfg.seq_len:
            log.info("using the cache's window length %d (config says %d)", meta["seq_len"], cfg.seq_len)
        if abs(meta["temperature"] - cfg.loss.temperature) > 1e-9:
            raise DownsizeError(f"the cache holds the teacher at temperature {meta['temperature']}, the loss asks for "
                                f"{cfg.loss.temperature}", hint="re-cache with the same --temperature, or match the loss to it")
        teacher_name = teacher_ref or meta["teacher"]
        if isinstance(student, (str, StudentSpec)) and (StudentSpec.parse(student) if isinstance(student, str) else student).ref is None:
            from transformers import AutoConfig

            from downsize.models.refs import load_tokenizer, resolve_model

            if not teacher_ref:
                raise DownsizeError("a student derived from the teacher's config needs --teacher even with --cache",
                                    hint="pass the teacher reference; only its config and tokenizer are read")
            tcfg = AutoConfig.from_pretrained(str(resolve_model(teacher_ref).path))
            teacher_tok = load_tokenizer(teacher_ref)
            spec = StudentSpec.parse(student) if isinstance(student, str) else student
            torch.manual_seed(spec.seed)
            from transformers import AutoModelForCausalLM

            model = AutoModelForCausalLM.from_config(derive_config(tcfg, spec.overrides), dtype=torch.float32)
            tok, student_desc = teacher_tok, spec.describe()
        else:
            model, tok, student_desc = build_student(student, None, None, cfg.lora)
        from downsize.data.packing import tokenizer_fingerprint

        if tokenizer_fingerprint(tok) != meta["tokenizer"]:
            raise DownsizeError(f"the cache at {cfg.cache} was made with another tokenizer than the student's",
                                hint="cache the teacher with the student's tokenizer family, or use an online teacher")
        rows = model.get_output_embeddings().weight.shape[0]
        shared = min(rows, meta["vocab_size"]) if rows != meta["vocab_size"] else None
        plan = VocabPlan("same", shared, f"cache vocab {meta['vocab_size']}, student {rows}")
        seq_len = meta["seq_len"]
    elif is_server(teacher_ref):  # the teacher behind a server scores the batches (distill.onpolicy)
        from downsize.distill.onpolicy import server_setup

        model, tok, student_desc, loss_fn, data = server_setup(teacher_ref, student, data_ref, cfg)
        teacher_name, teacher_dtype, seq_len = teacher_ref, "server", cfg.seq_len
        plan = VocabPlan("same", None, "the server's tokenizer matches the student's")
    else:
        if teacher_ref is None:
            raise DownsizeError("no teacher: give a teacher reference or a --cache directory")
        teacher_dtype = teacher_precision(cfg.teacher_dtype, cfg.train.mixed_precision)
        where = Placement(cfg.teacher_device, teacher_dtype)  # loaded straight in the dtype and on the device it runs in
        t_model, teacher_tok = load_placed(teacher_ref, where) if not isinstance(teacher_ref, tuple) else teacher_ref
        teacher_name = str(teacher_ref if not isinstance(teacher_ref, tuple) else getattr(t_model.config, "_name_or_path", "model"))
        model, tok, student_desc = build_student(student, t_model, teacher_tok, cfg.lora)
        if isinstance(teacher_ref, tuple):
            t_model = place(t_model, where)
        teacher = OnlineTeacher(t_model)
        gen_config = t_model.generation_config if t_model.generation_config.eos_token_id is not None else None
        plan = plan_vocab(teacher_tok, tok, t_model.get_output_embeddings().weight.shape[0],
                          model.get_output_embeddings().weight.shape[0], cfg.vocab_align, cfg.cross_tokenizer)
        seq_len = cfg.seq_len
        data = WindowData(load_stream(tok, data_ref, cfg.split), seq_len, cfg.train.seed, cfg.windows)
    n_params = _params(model)
    if cfg.lora:
        model = apply_lora(model, cfg.lora)
    if is_server(teacher_ref):
        pass
    elif plan.mode == "uld":
        loss_fn = make_uld_loss(cfg, teacher, teacher_tok, tok)
    else:
        loss_fn = make_kd_loss(cfg, teacher, plan)
    if cfg.on_policy:
        data = _Tagged(data)
    with with_teacher_ahead(cfg, teacher, model, data, plan) as data:
        result = train(model, loss_fn, data, cfg.train, work, resume=resume)
        ahead = getattr(data, "teacher_threads", 0)
    student_ref = (StudentSpec.parse(student) if isinstance(student, str) else student).ref if isinstance(student, (str, StudentSpec)) else None
    model = _merge(model, cfg.lora, student_ref)
    final = {"train_loss": result.final_loss, **result.metrics}
    val_tokens = cfg.val_tokens if eval_tokens is None else eval_tokens
    if val_tokens and isinstance(data_ref, str):
        final.update(_validation(model, tok, data_ref, seq_len, val_tokens))
    card = {
        "name": out.name, "stage": "distill", "teacher": teacher_name, "student": student_desc,
        "student_parameters": n_params, "data": str(data_ref), "vocab": plan.message,
        "teacher_mode": "offline cache " + str(cfg.cache) if cfg.cache else "online (" + teacher_dtype + ")",
        "teacher_ahead": f"the teacher's next forward on {ahead} thread(s) beside the step" if ahead else "off",
        "server": asdict(cfg.server) if is_server(teacher_ref) else None,
        "loss": {k: v for k, v in asdict(cfg.loss).items()},
        "on_policy": asdict(cfg.on_policy) if cfg.on_policy else None,
        "lora": asdict(cfg.lora) if cfg.lora else None,
        "steps": result.steps, "tokens": result.tokens, "seq_len": seq_len,
        "wall_time_s": round(time.time() - t0, 1), "final_metrics": final,
        "config": {"train": asdict(cfg.train), "windows": cfg.windows, "split": cfg.split},
    }
    path = save_model(model, tok, out, card, cfg.save_dtype, gen_config if tok is teacher_tok else None, overwrite)
    _drop_work(work, cfg.keep_work)
    return path


def _drop_work(work: Path, keep: bool) -> None:
    """Remove the finished run's checkpoints (GBs for real shapes: weights + Adam moments) once the output is
    saved, unless kept; the small metrics log in ``work`` stays, it is the run's training curve."""
    ckpt = work / CHECKPOINTS
    if not keep and ckpt.is_dir():
        shutil.rmtree(ckpt, ignore_errors=True)
        log.info("removed the finished run's checkpoints %s (keep_work keeps them)", ckpt)


def _validation(model, tok, data_ref: str, seq_len: int, max_tokens: int) -> dict:
    from downsize.eval.perplexity import perplexity

    split = "validation" if data_ref == "zoo:stdlib" else None
    if split is None:
        return {}
    r = perplexity(model, load_stream(tok, data_ref, split), seq_len=seq_len, batch_size=8, max_tokens=max_tokens,
                   chunk_rows=VAL_CHUNK_ROWS, desc="validation")
    return {"val_perplexity": r.perplexity, "val_tokens": r.tokens}

