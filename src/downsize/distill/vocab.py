"""Vocabulary alignment between teacher and student, and character-offset alignment across tokenizers.

    >>> from downsize.models.refs import load_tokenizer
    >>> teacher_tok = student_tok = load_tokenizer("zoo:coder-teacher-qwen")     # 4096 tokens
    >>> plan = plan_vocab(teacher_tok, student_tok, teacher_rows=4160, student_rows=4096)  # a padded teacher embedding
    >>> plan.mode, plan.shared          # logits compared on the first 4096 ids
    ('same', 4096)
    >>> other = load_tokenizer("zoo:coder-teacher")                  # another tokenizer
    >>> plan_vocab(other, student_tok, teacher_rows=8192, student_rows=4096)
    Traceback (most recent call last):
    downsize.errors.DownsizeError: teacher tokenizer ... and student tokenizer ... are different: ...
      hint: two ways out: (1) cross-tokenizer distillation with --cross-tokenizer uld ...
    >>> t_ids, s_ids, pairs = offset_pairs("def add(a, b):", other, student_tok, 64, 64)
    >>> pairs.shape[1], len(pairs) > 0  # (teacher position, student position) pairs that have read the same text
    (2, True)

Same tokenizer, different embedding sizes (padding rows): the first ``min`` ids are compared, with
one log line. Tokenizers whose shared ids disagree are *different tokenizers*: logit KD over ids is
meaningless, so downsize refuses and names the two ways out (cross-tokenizer ULD, or text KD).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from downsize.errors import DownsizeError

log = logging.getLogger(__name__)

VOCAB_ALIGN = ("auto", "off")
CROSS_TOKENIZER = ("error", "uld")


@dataclass(frozen=True)
class VocabPlan:
    mode: str  # "same" (compare ids < shared) or "uld" (cross-tokenizer)
    shared: int | None
    message: str


def _describe(tok) -> str:
    name = getattr(tok, "name_or_path", "") or type(tok).__name__
    return f"{name} ({len(tok)} tokens)"


def plan_vocab(teacher_tok, student_tok, teacher_rows: int, student_rows: int, vocab_align: str = "auto",
               cross_tokenizer: str = "error") -> VocabPlan:
    """Decide how teacher and student logits are compared; raise ``DownsizeError`` when they cannot be."""
    if vocab_align not in VOCAB_ALIGN or cross_tokenizer not in CROSS_TOKENIZER:
        raise DownsizeError(f"vocab_align={vocab_align!r}, cross_tokenizer={cross_tokenizer!r} not understood",
                            hint=f"vocab_align: {', '.join(VOCAB_ALIGN)}; cross_tokenizer: {', '.join(CROSS_TOKENIZER)}")
    tv, sv = teacher_tok.get_vocab(), student_tok.get_vocab()
    t_by_id = {i: t for t, i in tv.items()}
    s_by_id = {i: t for t, i in sv.items()}
    common = min(len(teacher_tok), len(student_tok))
    disagree = [i for i in range(common) if t_by_id.get(i) != s_by_id.get(i)]
    if disagree:
        if cross_tokenizer == "uld":
            msg = (f"teacher tokenizer {_describe(teacher_tok)} and student tokenizer {_describe(student_tok)} differ "
                   f"(e.g. id {disagree[0]}: {t_by_id.get(disagree[0])!r} vs {s_by_id.get(disagree[0])!r}); "
                   "using cross-tokenizer ULD over character-aligned positions")
            log.info(msg)
            return VocabPlan("uld", None, msg)
        raise DownsizeError(
            f"teacher tokenizer {_describe(teacher_tok)} and student tokenizer {_describe(student_tok)} are different: "
            f"{len(disagree)} of the {common} shared ids mean different tokens (e.g. id {disagree[0]}: "
            f"{t_by_id.get(disagree[0])!r} vs {s_by_id.get(disagree[0])!r}), so logits cannot be compared id by id",
            hint="two ways out: (1) cross-tokenizer distillation with --cross-tokenizer uld (Universal Logit "
                 "Distillation over character-aligned positions), or (2) text KD: generate teacher data with "
                 "`downsize generate` and train the student on it with cross entropy (`downsize distill --kd-ratio 0` or SFT)")
    shared = min(teacher_rows, student_rows)
    if len(teacher_tok) > shared or len(student_tok) > shared:
        raise DownsizeError(f"the tokenizers have {len(teacher_tok)}/{len(student_tok)} tokens but the models only "
                            f"{teacher_rows}/{student_rows} embedding rows",
                            hint="resize the smaller model's embeddings (model.resize_token_embeddings(len(tokenizer)))")
    if teacher_rows == student_rows:
        return VocabPlan("same", None, f"teacher and student share the vocabulary ({shared} ids)")
    msg = (f"teacher vocab {teacher_rows} ≠ student {student_rows}; the tokenizers agree on all {common} ids, "
           f"so logits are compared on the first {shared} ids")
    if vocab_align == "off":
        raise DownsizeError(msg.replace("so logits are", "but --vocab-align=off forbids that; they would be"),
                            hint="pass --vocab-align auto to compare the shared ids")
    log.info("%s (pass --vocab-align off to refuse)", msg)
    return VocabPlan("same", shared, msg)


def offset_pairs(text: str, teacher_tok, student_tok, max_len_t: int, max_len_s: int):
    """Tokenise ``text`` with both tokenizers; pair positions whose tokens end at the same character.

    Returns (teacher_ids (Tt,), student_ids (Ts,), pairs (n, 2) of (teacher_pos, student_pos)).
    Both positions have read exactly ``text[:c]``, so both predict what follows character c.
    The last token of each sequence is never paired (its next token is unknown).
    """
    et = teacher_tok(text, add_special_tokens=False, return_offsets_mapping=True)
    es = student_tok(text, add_special_tokens=False, return_offsets_mapping=True)
    t_ids, t_off = et["input_ids"][:max_len_t], et["offset_mapping"][:max_len_t]
    s_ids, s_off = es["input_ids"][:max_len_s], es["offset_mapping"][:max_len_s]
    t_end = {e: i for i, (_, e) in enumerate(t_off[:-1])}
    pairs = [(t_end[e], j) for j, (_, e) in enumerate(s_off[:-1]) if e in t_end]
    return (torch.tensor(t_ids, dtype=torch.long), torch.tensor(s_ids, dtype=torch.long),
            torch.tensor(pairs, dtype=torch.long).view(-1, 2))
