"""Supervised fine-tuning on chat data (loss on the assistant's tokens only), full weights or LoRA: text KD from
teacher-written traces, plus logit KD where the teacher's top-k logprobs were stored.

    >>> from downsize.models.refs import load_tokenizer
    >>> tok = load_tokenizer("zoo:coder-teacher-qwen")
    >>> ids, labels = assistant_labels(tok, [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}])
    >>> len(ids) == len(labels) and any(x != IGNORE_INDEX for x in labels)
    True
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from downsize.distill.losses import IGNORE_INDEX, Head, LossSpec, TopK, kd_loss
from downsize.distill.save import save_model
from downsize.distill.student import _load_base, _merge
from downsize.distill.teacher import final_hidden, lm_head
from downsize.distill.train import WORK_SUFFIX
from downsize.errors import DownsizeError
from downsize.io import KIND_SFT, check_output
from downsize.train.loop import LoraSpec, TrainConfig, TrainResult, apply_lora, check_fresh_start, train

log = logging.getLogger(__name__)

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
    from downsize.data.refs import jsonl_objects
    from downsize.errors import reading

    with reading(ref.path):
        for lineno, obj in jsonl_objects(ref.path, "one JSON object per line"):
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
