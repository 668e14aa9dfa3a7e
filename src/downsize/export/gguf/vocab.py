"""Tokenizer metadata for GGUF: byte-level BPE vocab and merges, the llama.cpp pre-tokenizer detected from the
tokenizer's own regex (not a hash of known vocabularies), special tokens, BOS/EOS/EOT/pad and the chat template.
The tokenizer is loaded as transformers would run it, without transformers for tokenizer.json folders
(see tokenizer.py).

    >>> detect_pretokenizer(json.load(open("tokenizer.json")))
    'llama-bpe'
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import gguf

from downsize.errors import DownsizeError
from downsize.export.gguf.tokenizer import load_tokenizer

log = logging.getLogger(__name__)

# The contraction clause as Llama 3 / Qwen2 write it in tokenizer.json, and as llama.cpp writes it.
_CONTRACTIONS_HF = "(?i:'s|'t|'re|'ve|'m|'ll|'d)"
_CONTRACTIONS_CPP = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
GPT2_REGEX = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
LLAMA3_REGEX = (_CONTRACTIONS_HF + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_REGEX = (_CONTRACTIONS_HF + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
DIGIT_REGEX = r"\p{N}"

# llama.cpp pre-tokenizer name (tokenizer.ggml.pre) -> the sequence of split regexes it applies (llama-vocab.cpp).
# Each entry is checked against llama.cpp in tests/export/test_vocab.py.
KNOWN_PRETOKENIZERS: dict[str, tuple[str, ...]] = {
    "llama-bpe": (LLAMA3_REGEX,),
    "qwen2": (QWEN2_REGEX,),
    "gpt-2": (GPT2_REGEX,),
    "starcoder": (DIGIT_REGEX, GPT2_REGEX),
}

END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>")


def _canon(regex: str) -> str:
    return regex.replace(_CONTRACTIONS_CPP, _CONTRACTIONS_HF)


def _split_regexes(pre: dict | None) -> tuple[str, ...]:
    """The regex sequence of a byte-level pre-tokenizer, or raise saying which part llama.cpp cannot express."""
    if pre is None:
        raise DownsizeError("the tokenizer has no pre-tokenizer, so llama.cpp cannot split text the same way",
                            hint="only byte-level BPE tokenizers with a regex pre-tokenizer (or SentencePiece) are supported")
    parts = pre["pretokenizers"] if pre.get("type") == "Sequence" else [pre]
    out: list[str] = []
    for p in parts:
        kind = p.get("type")
        if kind == "Split":
            if p.get("behavior") != "Isolated" or p.get("invert"):
                raise DownsizeError(f"the tokenizer's Split pre-tokenizer uses behavior={p.get('behavior')} invert={p.get('invert')}",
                                    hint="llama.cpp only reproduces Isolated, non-inverted regex splits")
            pat = p.get("pattern", {})
            if "Regex" not in pat:
                raise DownsizeError(f"the tokenizer splits on a literal string {pat!r}, not a regex",
                                    hint="llama.cpp pre-tokenizers are regex splits")
            out.append(_canon(pat["Regex"]))
        elif kind == "Digits":
            if not p.get("individual_digits"):
                raise DownsizeError("the tokenizer groups digit runs with Digits(individual_digits=False)",
                                    hint="no llama.cpp pre-tokenizer matches; use a regex split")
            out.append(DIGIT_REGEX)
        elif kind == "ByteLevel":
            if p.get("add_prefix_space"):
                raise DownsizeError("the tokenizer's ByteLevel pre-tokenizer adds a prefix space",
                                    hint="llama.cpp's byte-level BPE never adds one; no pre-tokenizer matches")
            if p.get("use_regex", True):
                out.append(GPT2_REGEX)
        else:
            raise DownsizeError(f"the tokenizer uses a {kind} pre-tokenizer, which llama.cpp cannot reproduce",
                                hint="supported: Split(regex), Digits(individual), ByteLevel")
    return tuple(out)


def detect_pretokenizer(tokenizer_json: dict) -> str:
    """The llama.cpp pre-tokenizer name whose regexes equal this tokenizer's; refuse clearly when none does."""
    regexes = _split_regexes(tokenizer_json.get("pre_tokenizer"))
    for name, known in KNOWN_PRETOKENIZERS.items():
        if tuple(_canon(r) for r in known) == regexes:
            return name
    shown = " then ".join(repr(r) for r in regexes) or "(none)"
    raise DownsizeError(f"no llama.cpp pre-tokenizer splits text like this tokenizer: its regexes are {shown}",
                        hint=f"llama.cpp knows {', '.join(KNOWN_PRETOKENIZERS)} (among others); retrain the tokenizer "
                             "with one of those regexes, or add the new pre-tokenizer to llama.cpp")


def write_tokenizer(w: gguf.GGUFWriter, root: Path, cfg) -> dict:
    """Write tokenizer.* keys for the tokenizer in ``root``; returns a summary (model, pre, special ids)."""
    tok = load_tokenizer(Path(root), cfg)
    # The tokenizer as transformers really runs it: for some model types (e.g. qwen2) transformers replaces the
    # pre-tokenizer of tokenizer.json with the family's own, and the GGUF must split text the way HF does.
    tj = json.loads(tok.backend.to_str())
    model = tj.get("model", {})
    if model.get("type") != "BPE":
        raise DownsizeError(f"tokenizer model type {model.get('type')!r} is not supported",
                            hint="supported: byte-level BPE (tokenizer.json with a ByteLevel pre-tokenizer)")
    pre = detect_pretokenizer(tj)

    vocab: dict[str, int] = dict(model["vocab"])
    added = {t["content"]: t for t in tj.get("added_tokens", [])}
    for content, t in added.items():
        vocab[content] = t["id"]
    n = max(int(getattr(cfg, "vocab_size", 0) or 0), max(vocab.values()) + 1)
    tokens = [f"[PAD{i}]" for i in range(n)]
    types = [gguf.TokenType.UNUSED] * n
    for text, i in vocab.items():
        tokens[i] = text
        if text in added:
            types[i] = gguf.TokenType.CONTROL if added[text].get("special") else gguf.TokenType.USER_DEFINED
        else:
            types[i] = gguf.TokenType.NORMAL
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]

    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(pre)
    w.add_token_list(tokens)
    w.add_token_types([int(t) for t in types])
    w.add_token_merges(merges)

    ids = {k: tok.token_id(tok.special.get(f"{k}_token")) for k in ("bos", "eos", "pad", "unk")}
    eos_cfg = getattr(cfg, "eos_token_id", None)
    if ids["eos"] is None and eos_cfg is not None:
        ids["eos"] = eos_cfg[0] if isinstance(eos_cfg, list) else eos_cfg
    probe = tok.encode("a", add_special_tokens=True)
    plain = tok.encode("a", add_special_tokens=False)
    add_bos = ids["bos"] is not None and len(probe) > len(plain) and probe[0] == ids["bos"]
    add_eos = ids["eos"] is not None and len(probe) > len(plain) and probe[-1] == ids["eos"]
    if ids["bos"] is None:  # llama.cpp falls back to a fixed id for BPE; point it at EOS, never added
        ids["bos"] = ids["eos"]
    eot = next((vocab[t] for t in END_OF_TURN_TOKENS if t in vocab), None)
    if ids["bos"] is not None:
        w.add_bos_token_id(ids["bos"])
    if ids["eos"] is not None:
        w.add_eos_token_id(ids["eos"])
    if ids["pad"] is not None:
        w.add_pad_token_id(ids["pad"])
    if ids["unk"] is not None:
        w.add_unk_token_id(ids["unk"])
    if eot is not None:
        w.add_eot_token_id(eot)
    w.add_add_bos_token(add_bos)
    w.add_add_eos_token(add_eos)
    template = tok.chat_template
    if isinstance(template, dict) and template:
        # every named template (tool_use, rag…) as tokenizer.chat_template.<name>, byte for byte; the default one as
        # tokenizer.chat_template (the first one when none is called "default", as before)
        default = template.get("default") or next(iter(template.values()))
        template = [{"name": "default", "template": default},
                    *({"name": k, "template": v} for k, v in template.items() if k != "default")]
    if template:
        w.add_chat_template(template)
    return {"model": "gpt2", "pre": pre, "n_tokens": n, "add_bos": add_bos, "eot": eot, **ids,
            "chat_template": bool(template), "loaded_with": tok.how}
