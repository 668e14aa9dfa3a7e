"""Distillation and SFT as stages: plain functions over references and a frozen config, run by the one loop.

    >>> from downsize.distill import distill, DistillConfig, StudentSpec, sft, SFTConfig
    >>> from downsize.train.loop import TrainConfig, LoraSpec
    >>> student = StudentSpec.derived(num_hidden_layers=4, hidden_size=192)          # teacher config, random init
    >>> cfg = DistillConfig(train=TrainConfig(steps=300, batch_size=8, lr=2e-3), loss=LossSpec("fkl"), seq_len=128)
    >>> distill("zoo:coder-teacher", student, "zoo:stdlib", cfg, "runs/student")    # -> Path to an HF directory
    >>> distill("zoo:coder-teacher", "runs/pruned", "zoo:stdlib", replace(cfg, cache="runs/cache"), "runs/s2")
    >>> sft("zoo:coder-teacher", "chats.jsonl", SFTConfig(train=TrainConfig(steps=100), lora=LoraSpec(r=8)), "runs/sft")

The output directory is a normal Hugging Face model (safetensors, config, tokenizer, generation
config) with ``README.md`` and ``distill_card.json`` recording teacher, data, loss, steps, tokens
and final metrics. Checkpoints live in ``OUT.work/checkpoints``; ``resume=True`` continues exactly; the
checkpoints are removed once the output is saved (``keep_work=True`` keeps them; ``metrics.jsonl`` stays).
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

import numpy as np
import torch

from downsize.distill.onpolicy import ServerSpec, is_server
from downsize.distill.losses import IGNORE_INDEX, Head, LossSpec, TopK, kd_loss, uld_loss
from downsize.distill.teacher import (OnlineTeacher, TopKCacheDataset, cached_topk, final_hidden, lm_head, sample,
                                      teacher_precision, unwrap)
from downsize.distill.vocab import VocabPlan, offset_pairs, plan_vocab
from downsize.errors import DownsizeError
from downsize.io import KIND_DISTILL, KIND_SFT, atomic_dir, check_output, write_json_atomic, write_text_atomic
from downsize.models.placement import Placement, load_placed, place, to_model
from downsize.train.loop import (CHECKPOINTS, LoraSpec, TrainConfig, TrainResult, apply_lora, check_fresh_start,
                                 merge_lora, train)

log = logging.getLogger(__name__)

CARD_JSON = "distill_card.json"
WORK_SUFFIX = ".work"
VAL_TOKENS = 32768  # default size of the closing validation pass
VAL_CHUNK_ROWS = 512  # positions per LM-head chunk there: (512, V) fp32 is 311 MB at V = 151,936
SAVE_DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32, "float16": torch.float16}
# Student config fields that stop being valid when the width changes and no value is given for them.
_WIDTH_DERIVED = ("head_dim",)


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


# ---- the student ----------------------------------------------------------------------------

@dataclass(frozen=True)
class StudentSpec:
    """The student: a model reference to start from, or the teacher's config with changes (random init).

    ``StudentSpec.derived(num_hidden_layers=4, hidden_size=192)`` — teacher config, those fields changed,
    ``intermediate_size`` scaled with the width unless given, random init from ``seed``.
    ``StudentSpec.from_ref("runs/pruned")`` — an existing model (e.g. a pruned teacher), its weights kept.
    """

    ref: str | None = None
    overrides: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 0

    def __post_init__(self):
        object.__setattr__(self, "overrides", MappingProxyType(dict(self.overrides)))
        if self.ref is not None and self.overrides:
            raise DownsizeError("a student is either a model reference or teacher-config overrides, not both",
                                hint="pass StudentSpec.from_ref(path) or StudentSpec.derived(field=value, ...)")

    @classmethod
    def derived(cls, seed: int = 0, **overrides) -> "StudentSpec":
        return cls(None, overrides, seed)

    @classmethod
    def from_ref(cls, ref: str) -> "StudentSpec":
        return cls(str(ref), {}, 0)

    @classmethod
    def parse(cls, text: str) -> "StudentSpec":
        """CLI form: a model reference, or ``teacher:num_hidden_layers=4,hidden_size=192``."""
        if not text.startswith("teacher:"):
            return cls.from_ref(text)
        fields: dict[str, Any] = {}
        for part in text[len("teacher:"):].replace(",", " ").split():
            k, sep, v = part.partition("=")
            if not sep:
                raise DownsizeError(f"cannot read student field {part!r}", hint="write teacher:num_hidden_layers=4,hidden_size=192")
            fields[k] = json.loads(v) if v[:1].isdigit() or v in ("true", "false") or v[:1] in "-[{" else v
        return cls.derived(**fields)

    def describe(self) -> str:
        return self.ref or "teacher config with " + ", ".join(f"{k}={v}" for k, v in self.overrides.items()) + " (random init)"


def derive_config(teacher_config, overrides: Mapping[str, Any]):
    """The teacher's config with ``overrides``; width-derived fields are recomputed, unknown fields refused."""
    cfg = copy.deepcopy(teacher_config)
    unknown = [k for k in overrides if not hasattr(cfg, k)]
    if unknown:
        raise DownsizeError(f"the teacher config ({cfg.model_type}) has no field(s) {unknown}",
                            hint="use config.json names, e.g. num_hidden_layers, hidden_size, intermediate_size, "
                                 "num_attention_heads, num_key_value_heads")
    ov = dict(overrides)
    if "hidden_size" in ov:
        ratio = ov["hidden_size"] / teacher_config.hidden_size
        ov.setdefault("intermediate_size", max(32, int(round(teacher_config.intermediate_size * ratio / 32)) * 32))
        if "num_attention_heads" not in ov and ov["hidden_size"] % teacher_config.num_attention_heads:
            raise DownsizeError(f"hidden_size {ov['hidden_size']} is not divisible by the teacher's "
                                f"{teacher_config.num_attention_heads} attention heads",
                                hint="also set num_attention_heads (and num_key_value_heads) to a divisor")
    if "hidden_size" in ov or "num_attention_heads" in ov:
        for k in _WIDTH_DERIVED:
            if k not in ov and hasattr(cfg, k):
                heads = ov.get("num_attention_heads", teacher_config.num_attention_heads)
                ov[k] = ov.get("hidden_size", teacher_config.hidden_size) // heads
    for k, v in ov.items():
        setattr(cfg, k, v)
    return cfg


def build_student(spec: StudentSpec | str | torch.nn.Module, teacher_model, teacher_tok, lora: LoraSpec | None = None):
    """Resolve a student spec to (model fp32, or NF4 for QLoRA, tokenizer, description)."""
    from transformers import AutoModelForCausalLM, PretrainedConfig

    if isinstance(spec, tuple):  # (model, tokenizer)
        return spec[0].float(), spec[1], f"given model ({type(spec[0]).__name__})"
    if isinstance(spec, torch.nn.Module):
        return spec.float(), teacher_tok, f"given model ({type(spec).__name__})"
    if isinstance(spec, PretrainedConfig):
        torch.manual_seed(0)
        return AutoModelForCausalLM.from_config(spec, dtype=torch.float32), teacher_tok, f"config {spec.model_type}"
    if isinstance(spec, str):
        spec = StudentSpec.parse(spec)
    if spec.ref is not None:
        model, tok = _load_base(spec.ref, lora)
        return model, tok, spec.ref
    if lora is not None and lora.quantize_base:
        raise DownsizeError("QLoRA needs a pretrained student to quantise, not a random-init one",
                            hint="give --student a model reference, or drop --qlora")
    if teacher_model is None:
        raise DownsizeError("a student derived from the teacher's config needs the teacher model",
                            hint="with an offline cache, give the student as a model reference")
    cfg = derive_config(teacher_model.config, spec.overrides)
    torch.manual_seed(spec.seed)
    return AutoModelForCausalLM.from_config(cfg, dtype=torch.float32), teacher_tok, spec.describe()


def load_nf4(ref: str):
    """Load a model reference with 4-bit NF4 weights for QLoRA (CUDA + bitsandbytes only)."""
    if not torch.cuda.is_available():
        raise DownsizeError("QLoRA (a 4-bit NF4 base, --qlora) needs a CUDA GPU with bitsandbytes; this machine has none",
                            hint="use LoRA on the full-precision base instead: drop --qlora and keep --lora-r")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise DownsizeError("QLoRA needs the bitsandbytes package", hint="pip install -c constraints.txt bitsandbytes") from None
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    from downsize.models.refs import load_tokenizer, resolve_model

    r = resolve_model(ref)
    q = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16,
                           bnb_4bit_use_double_quant=True)
    model = AutoModelForCausalLM.from_pretrained(str(r.path), quantization_config=q, device_map={"": 0})
    return model, load_tokenizer(r)


def merge_qlora(peft_model, base_ref: str):
    """Fold QLoRA adapters into a full-precision copy of the base (not into the 4-bit weights, which would
    round the update away): the adapters are re-attached to the fp32 base and merged there."""
    from peft import get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict

    from downsize.models.refs import load_model

    adapters = {k: v.detach().float().cpu() for k, v in get_peft_model_state_dict(peft_model).items()}
    base, _ = load_model(base_ref, dtype=torch.float32)
    fresh = get_peft_model(base, peft_model.peft_config["default"])
    set_peft_model_state_dict(fresh, adapters)
    return fresh.merge_and_unload()


def _load_base(ref: str, lora: LoraSpec | None):
    from downsize.models.refs import load_model

    if lora is not None and lora.quantize_base == "nf4":
        return load_nf4(ref)
    return load_model(ref, dtype=torch.float32)


def _merge(model, lora: LoraSpec | None, base_ref):
    model = unwrap(model)
    if lora is not None and lora.quantize_base == "nf4":
        return merge_qlora(model, base_ref)
    return merge_lora(model)


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


@dataclass(frozen=True)
class SFTConfig:
    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=100, lr=2e-4, warmup_steps=10))
    max_seq_len: int = 512
    lora: LoraSpec | None = None
    save_dtype: str = "bfloat16"
    # Weight of forward KL to the teacher's stored top-k logprobs (records written with --top-logprobs), mixed
    # with the cross entropy on the assistant tokens: (1 - w) CE + w KL. 0: plain SFT (text KD only).
    logprob_kd: float = 0.0

    def __post_init__(self):
        if not 0.0 <= self.logprob_kd <= 1.0:
            raise DownsizeError(f"logprob_kd must be in [0, 1], got {self.logprob_kd}",
                                hint="0 = cross entropy only, 1 = KL to the teacher's top-k only")


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


def _rows(head: Head) -> Head:
    h = head.hidden[:, :-1]
    return Head(h.reshape(-1, h.shape[-1]), head.weight, head.bias, head.softcap)


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
        else:
            t = _rows(teacher.head(ids))
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


# ---- output ---------------------------------------------------------------------------------

def read_card(out: str | os.PathLike) -> dict:
    """The card a distill/sft/train output carries (``CARD_JSON``), or {} when it has none."""
    p = Path(out) / CARD_JSON
    return json.loads(p.read_text()) if p.exists() else {}


def save_model(model, tokenizer, out: Path, card: dict, save_dtype: str = "bfloat16", generation_config=None,
               overwrite: bool = False) -> Path:
    """Write a complete HF directory atomically: weights, config, tokenizer, generation config, card.

    ``out`` must be new, empty or a previous output of the same stage unless ``overwrite`` (downsize.io.check_output).
    """
    from transformers import GenerationConfig

    model = merge_lora(unwrap(model))
    if generation_config is None:
        eos = [tokenizer.eos_token_id]
        im_end = tokenizer.convert_tokens_to_ids("<|im_end|>") if "<|im_end|>" in tokenizer.get_vocab() else None
        if im_end is not None and im_end not in eos:
            eos.append(im_end)
        generation_config = GenerationConfig(eos_token_id=eos, pad_token_id=tokenizer.pad_token_id,
                                             do_sample=True, temperature=0.8, top_p=0.95)
    with atomic_dir(out, card.get("stage", KIND_DISTILL), overwrite) as tmp:
        model.to(SAVE_DTYPES[save_dtype]).save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        generation_config.save_pretrained(tmp)
        write_json_atomic(tmp / CARD_JSON, card)
        write_text_atomic(tmp / "README.md", render_card(card))
    return out


def render_card(card: dict) -> str:
    rows = "\n".join(f"| {k} | {v} |" for k, v in _flat(card))
    return f"# {card.get('name', 'student')}\n\nProduced by `downsize {card['stage']}`.\n\n| | |\n|---|---|\n{rows}\n"


def _flat(d: dict, prefix: str = ""):
    for k, v in d.items():
        if isinstance(v, dict) and k != "config":
            yield from _flat(v, f"{prefix}{k}.")
        elif k != "config":
            yield f"{prefix}{k}", (f"{v:.4g}" if isinstance(v, float) else v)


def _params(model) -> int:
    return sum(p.numel() for p in unwrap(model).parameters())


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
    result = train(model, loss_fn, data, cfg.train, work, resume=resume)
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
                   chunk_rows=VAL_CHUNK_ROWS)
    return {"val_perplexity": r.perplexity, "val_tokens": r.tokens}


# ---- SFT --------------------------------------------------------------------------------------

def _read_chats(chat_jsonl_ref: str) -> list[dict]:
    from downsize.data.refs import resolve_data

    ref = resolve_data(chat_jsonl_ref)
    if ref.kind == "hub":  # a Hub chat dataset: its rows as messages (the split in the reference, else all)
        out = [{"messages": r["messages"], "tools": None, "logprobs": None} for r in ref.records() if "messages" in r]
        if not out:
            raise DownsizeError(f"{chat_jsonl_ref} holds no chat rows (its column reads as plain text)",
                                hint="name its chat column with #COLUMN, e.g. Org/Name:train#messages")
        return out
    if ref.kind != "jsonl":
        raise DownsizeError(f"SFT needs chat JSONL, got {ref.kind} data at {chat_jsonl_ref}",
                            hint='one JSON object per line: {"messages": [{"role": "user", "content": ...}, ...], "tools": [...]}')
    out = []
    from downsize.errors import reading

    with open(ref.path, encoding="utf-8") as f, reading(ref.path):
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DownsizeError(f"{ref.path}:{lineno}: not valid JSON ({e.msg})", hint="one JSON object per line") from None
            msgs = obj.get("messages") if isinstance(obj, dict) else None
            if not isinstance(msgs, list) or not any(m.get("role") == "assistant" for m in msgs if isinstance(m, dict)):
                raise DownsizeError(f"{ref.path}:{lineno}: a record needs 'messages' with at least one assistant turn",
                                    hint='e.g. {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}')
            out.append({"messages": msgs, "tools": obj.get("tools"), "logprobs": obj.get("logprobs")})
    if not out:
        raise DownsizeError(f"{ref.path} holds no chat records", hint="write one {\"messages\": [...]} object per line")
    return out


def assistant_labels(tokenizer, messages: list[dict], tools=None, max_len: int | None = None) -> tuple[list[int], list[int]]:
    """Token ids of the rendered chat and labels that keep only assistant turns (others = -100).

    Each assistant turn's span is found in characters: it starts where the template's rendering of
    the preceding turns plus the generation prompt ends and ends where the rendering including the
    turn ends (so the end-of-turn token is learned too); tokens are labelled by their character offsets.
    """
    ids, labels, _ = _assistant_example(tokenizer, messages, tools, max_len)
    return ids, labels


def _assistant_example(tokenizer, messages: list[dict], tools=None, max_len: int | None = None,
                       turn_logprobs: list | None = None, table: dict | None = None):
    """(ids, labels, {token index: (top-k ids, logprobs)}) — the last only with stored teacher logprobs."""
    if not getattr(tokenizer, "chat_template", None):
        raise DownsizeError("the tokenizer has no chat template, so assistant turns cannot be found",
                            hint="use a model whose tokenizer_config.json has a chat_template")
    kw = {"tools": tools} if tools else {}
    full = tokenizer.apply_chat_template(messages, tokenize=False, **kw)
    spans = []
    for i, m in enumerate(messages):
        if m.get("role") != "assistant":
            continue
        before = tokenizer.apply_chat_template(messages[:i], tokenize=False, add_generation_prompt=True, **kw) if i else ""
        upto = tokenizer.apply_chat_template(messages[: i + 1], tokenize=False, **kw)
        if not full.startswith(upto) or not upto.startswith(before):
            raise DownsizeError("the chat template does not render conversations prefix by prefix, so assistant "
                                "tokens cannot be located", hint="use a ChatML-style template")
        spans.append((len(before), len(upto)))
    if turn_logprobs and table is not None:
        from downsize.distill.logprobs import teacher_token_example

        ids, offsets, teacher = teacher_token_example(tokenizer, full, spans, turn_logprobs, table)
    else:
        enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
        ids, offsets, teacher = enc["input_ids"], enc["offset_mapping"], {}
    labels = [t if any(a <= s < b for a, b in spans) else IGNORE_INDEX for t, (s, _e) in zip(ids, offsets)]
    if max_len:
        ids, labels = ids[:max_len], labels[:max_len]
        teacher = {i: v for i, v in teacher.items() if i < max_len}
    return ids, labels, teacher


class ChatDataset:
    """Chat examples padded per batch; batch ``step`` is a pure function of the step (seeded order).

    Examples are (ids, labels) or (ids, labels, {token index: (top-k ids, logprobs)}); with teacher top-k the
    batch also holds ``t_ids``/``t_logp`` (B, T, K), ``t_tail`` and ``t_mask`` (B, T), K the largest k seen
    (shorter rows are padded with ``pad_id`` at probability 0).
    """

    def __init__(self, examples: list[tuple], pad_id: int, seed: int = 0):
        self.examples, self.pad_id, self.seed = examples, pad_id, seed
        self.k = max((len(v[0]) for e in examples if len(e) > 2 for v in e[2].values()), default=0)

    def batch(self, step, batch_size, rank=0, world=1):
        n = len(self.examples)
        first = (step * world + rank) * batch_size
        rows = []
        for s in range(first, first + batch_size):
            e, i = divmod(s, n)
            rows.append(self.examples[int(np.random.default_rng([self.seed, e]).permutation(n)[i])])
        T = max(len(r[0]) for r in rows)
        ids = torch.full((len(rows), T), self.pad_id, dtype=torch.long)
        labels = torch.full((len(rows), T), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((len(rows), T), dtype=torch.long)
        for r, (x, y, *_) in enumerate(rows):
            ids[r, : len(x)], labels[r, : len(y)], mask[r, : len(x)] = torch.tensor(x), torch.tensor(y), 1
        out = {"input_ids": ids, "labels": labels, "attention_mask": mask}
        if self.k:
            from downsize.distill.losses import LOG_FLOOR, tail_logp

            t_ids = torch.full((len(rows), T, self.k), self.pad_id, dtype=torch.long)
            t_logp = torch.full((len(rows), T, self.k), LOG_FLOOR)
            t_mask = torch.zeros((len(rows), T), dtype=torch.bool)
            for r, row in enumerate(rows):
                for i, (tid, tlp) in (row[2] if len(row) > 2 else {}).items():
                    t_ids[r, i, : len(tid)], t_logp[r, i, : len(tlp)], t_mask[r, i] = torch.tensor(tid), torch.tensor(tlp), True
            out.update(t_ids=t_ids, t_logp=t_logp, t_tail=tail_logp(t_logp), t_mask=t_mask)
        return out


def make_sft_loss(logprob_kd: float = 0.0):
    """Cross entropy on assistant tokens only (labels = -100 elsewhere), LM head chunked; with ``logprob_kd`` > 0
    and teacher top-k in the batch, mixed with forward KL to it on the aligned tokens."""
    kd_spec = LossSpec("fkl", kd_ratio=1.0)

    def sft_loss(model, batch):
        h = final_hidden(model, batch["input_ids"], batch.get("attention_mask"))[:, :-1]
        tmpl = lm_head(model)
        rows = Head(h.reshape(-1, h.shape[-1]), tmpl.weight, tmpl.bias, tmpl.softcap)
        labels = batch["labels"][:, 1:].reshape(-1)  # row i predicts token i + 1
        ce, parts = kd_loss(rows, rows, labels, _SFT_SPEC)
        metrics = {"assistant_tokens": float(parts["tokens"])}
        if not logprob_kd or "t_ids" not in batch:
            return ce, metrics
        k = batch["t_ids"].shape[-1]
        aligned = batch["t_mask"][:, 1:].reshape(-1)
        teacher = TopK(batch["t_logp"][:, 1:].reshape(-1, k), batch["t_ids"][:, 1:].reshape(-1, k),
                       batch["t_tail"][:, 1:].reshape(-1))
        kd, kparts = kd_loss(rows, teacher, torch.where(aligned, labels, IGNORE_INDEX), kd_spec)
        metrics.update(ce=parts["ce"], kd=kparts["kd"], kd_tokens=float(kparts["tokens"]))
        return (1 - logprob_kd) * ce + logprob_kd * kd, metrics

    return sft_loss


_SFT_SPEC = LossSpec("fkl", kd_ratio=0.0)


def sft(model_ref, chat_jsonl_ref: str, cfg: SFTConfig, out_dir: str | os.PathLike, resume: bool = False,
        overwrite: bool = False) -> Path:
    """Supervised fine-tuning on chat JSONL: loss on assistant tokens only, full or LoRA (merged on save)."""

    out = Path(out_dir)
    check_output(out, KIND_SFT, overwrite)
    check_fresh_start(out.with_name(out.name + WORK_SUFFIX), resume, overwrite)
    t0 = time.time()
    records = _read_chats(chat_jsonl_ref)  # bad data fails before the model loads
    if isinstance(model_ref, tuple):
        model, tok = model_ref
        name = getattr(model.config, "_name_or_path", "model")
    else:
        model, tok = _load_base(str(model_ref), cfg.lora)
        name = str(model_ref)
    table = None
    if cfg.logprob_kd:
        from downsize.distill.logprobs import require_logprobs, token_table

        require_logprobs(records)
        table = token_table(tok)
    examples = [_assistant_example(tok, r["messages"], r["tools"], cfg.max_seq_len, r["logprobs"], table) for r in records]
    n_target = sum(sum(1 for y in lab if y != IGNORE_INDEX) for _, lab, _t in examples)
    n_aligned = sum(len(t) for _, _l, t in examples)
    if cfg.logprob_kd:
        log.info("teacher top-k aligned on %d of %d assistant tokens", n_aligned, n_target)
        if n_aligned == 0:
            raise DownsizeError("no assistant token could be aligned with the teacher's stored logprobs",
                                hint="logit KD from the data needs the student to share the teacher's tokenizer; "
                                     "set the KD weight to 0 for plain SFT")
    if n_target == 0:
        raise DownsizeError("no assistant tokens survive truncation", hint=f"raise max_seq_len (now {cfg.max_seq_len})")
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    data = ChatDataset(examples, pad, cfg.train.seed)
    if cfg.lora:
        model = apply_lora(model, cfg.lora)
    result: TrainResult = train(model, make_sft_loss(cfg.logprob_kd), data, cfg.train, out.with_name(out.name + WORK_SUFFIX),
                                resume=resume)
    if not isinstance(model_ref, tuple):
        model = _merge(model, cfg.lora, str(model_ref))
    card = {"name": out.name, "stage": "sft", "base": name, "data": str(chat_jsonl_ref), "examples": len(examples),
            "assistant_tokens": n_target, "loss": "cross entropy on assistant tokens" + (
                f" + {cfg.logprob_kd} forward KL to the teacher's stored top-k ({n_aligned} aligned tokens)"
                if cfg.logprob_kd else ""),
            "lora": asdict(cfg.lora) if cfg.lora else None, "steps": result.steps, "tokens": result.tokens,
            "wall_time_s": round(time.time() - t0, 1), "final_metrics": {"train_loss": result.final_loss, **result.metrics},
            "config": {"train": asdict(cfg.train), "max_seq_len": cfg.max_seq_len}}
    return save_model(model, tok, out, card, cfg.save_dtype, overwrite=overwrite)
