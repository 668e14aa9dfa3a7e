"""Tokenizer metadata for GGUF, written the way llama.cpp's converter (convert_hf_to_gguf.py) writes it:

* byte-level BPE (GPT-2 style tokenizer.json) -> ``tokenizer.ggml.model = "gpt2"`` with the llama.cpp pre-tokenizer
  whose split pipeline equals the tokenizer's own (its Split regexes, Digits, Punctuation and ByteLevel steps),
  chosen by that pipeline, not by a hash of known vocabularies as llama.cpp's converter does;
* SentencePiece-style BPE (byte fallback over "▁" pieces: Llama 2, TinyLlama, Mistral v0.1-0.3, Phi-3, Gemma)
  -> ``tokenizer.ggml.model = "llama"`` with per-token scores and types (from tokenizer.model when the folder has
  one, else from the merge ranks of tokenizer.json) and ``add_space_prefix``;
* normalizers llama.cpp cannot apply are refused, NFC (which llama.cpp does not apply either) is warned about;
* special tokens, BOS/EOS/EOT/pad and the chat template.

The tokenizer is loaded as transformers would run it, without transformers for tokenizer.json folders
(see tokenizer.py). tests/export/test_ggml_vocab.py checks every llama.cpp test vocabulary end to end.

Why this module is long: the table of llama.cpp's pre-tokenizers with the pipelines that identify them, and the
SentencePiece and BPE writers that consult it, are one unit that must change together when llama.cpp adds one.

    >>> import json      # Llama 3's split regex; its BPE does not ignore merges, so dbrx's entry, not llama-bpe
    >>> from downsize.zoo import zoo_path
    >>> detect_pretokenizer(json.loads((zoo_path("coder-teacher") / "tokenizer.json").read_text()))
    'dbrx'
    >>> detect_pretokenizer(json.loads((zoo_path("coder-teacher-qwen") / "tokenizer.json").read_text()))
    'qwen2'
"""

from __future__ import annotations

import json
import logging
import re
import struct
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import gguf

from downsize.errors import DownsizeError
from downsize.export.gguf.tokenizer import load_tokenizer

log = logging.getLogger(__name__)

TOKENIZER_MODEL = "tokenizer.model"
SPIECE = "\u2581"  # SentencePiece's visible space
GGUF_BPE, GGUF_SPM = "gpt2", "llama"  # tokenizer.ggml.model values

# The contraction clause as Llama 3 / Qwen2 write it in tokenizer.json, and as llama.cpp writes it.
_CONTRACTIONS_HF = "(?i:'s|'t|'re|'ve|'m|'ll|'d)"
_CONTRACTIONS_CPP = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
GPT2_REGEX = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
LLAMA3_REGEX = (_CONTRACTIONS_HF + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_REGEX = (_CONTRACTIONS_HF + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN35_REGEX = (_CONTRACTIONS_HF + r"|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|"
                r"\s+(?!\S)|\s+")
# Steps of a tokenizers pre-tokenizer, spelled as the regex llama.cpp runs for them.
DIGIT_REGEX = r"\p{N}"                      # Digits(individual_digits=True)
DIGITS_REGEX = r"\p{N}+"                    # Digits(individual_digits=False)
PUNCT_REGEX = r"[\p{P}\$\+<=>\^~\|`]+"      # Punctuation(behavior=Contiguous): Unicode P plus ASCII punctuation
# DeepSeek LLM / Coder (llama-vocab.cpp), spelled as DeepSeek's tokenizer.json spells them: the letter class holds
# U+212A KELVIN SIGN, U+2126 OHM SIGN and Greek Extended range ends that llama.cpp's copy carries NFC-normalized
# (which turns "K-ℭ" into a range from ASCII "K" up); _canon compares both spellings after NFC.
DEEPSEEK_LETTERS = (
    "A-Za-z\u00b5\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u01ba\u01bc-\u01bf\u01c4-\u0293\u0295-\u02af\u0370-\u0373"
    "\u0376\u0377\u037b-\u037d\u037f\u0386\u0388-\u038a\u038c\u038e-\u03a1\u03a3-\u03f5\u03f7-\u0481\u048a-\u052f"
    "\u0531-\u0556\u10a0-\u10c5\u13a0-\u13f5\u13f8-\u13fd\u1c90-\u1cba\u1cbd-\u1cbf\u1d00-\u1d2b\u1d6b-\u1d77"
    "\u1d79-\u1d9a\u1e00-\u1f15\u1f18-\u1f1d\u1f20-\u1f45\u1f48-\u1f4d\u1f50-\u1f57\u1f59\u1f5b\u1f5d\u1f5f-\u1f7d"
    "\u1f80-\u1fb4\u1fb6-\u1fbc\u1fbe\u1fc2-\u1fc4\u1fc6-\u1fcc\u1fd0-\u1fd3\u1fd6-\u1fdb\u1fe0-\u1fec\u1ff2-\u1ff4"
    "\u1ff6-\u1ffc\u2102\u2107\u210a-\u2113\u2115\u2119-\u211d\u2124\u2126\u2128\u212a-\u212d\u212f-\u2134\u2139"
    "\u213c-\u213f\u2145-\u2149\u214e\u2183\u2184\u2c00-\u2c7b\u2c7e-\u2ce4\u2ceb-\u2cee\u2cf2\u2cf3\ua640-\ua66d"
    "\ua680-\ua69b\ua722-\ua76f\ua771-\ua787\ua78b-\ua78e\uab70-\uabbf\ufb00-\ufb06\ufb13-\ufb17\uff21-\uff3a"
    "\uff41-\uff5a\U00010400-\U0001044f\U000104b0-\U000104d3\U000104d8-\U000104fb\U00010c80-\U00010cb2"
    "\U00010cc0-\U00010cf2\U000118a0-\U000118df\U0001e900-\U0001e943")
CJK_REGEX = "[一-龥ࠀ-一가-퟿]+"
DEEPSEEK_LLM = ("[\r\n]", f"\\s?[{DEEPSEEK_LETTERS}]+", "\\s?[!-/:-~！-／：-～‘-‟　-。]+", "\\s+$", CJK_REGEX, DIGITS_REGEX)
DEEPSEEK_CODER = ("[\r\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", CJK_REGEX, DIGIT_REGEX)


@dataclass(frozen=True)
class PreTokenizer:
    """A llama.cpp pre-tokenizer (tokenizer.ggml.pre, llama-vocab.cpp): the split steps it runs and the two flags
    the name also fixes -- clean_spaces (detokenizing drops the space before punctuation, transformers'
    clean_up_tokenization_spaces) and ignore_merges (a word that is a token is not merged, tokenizers' BPE
    ignore_merges)."""

    regexes: tuple[str, ...]
    clean_spaces: bool
    ignore_merges: bool = False


# Each name is checked against llama.cpp in tests/export/test_vocab.py; the first of several equal entries wins.
KNOWN_PRETOKENIZERS: dict[str, PreTokenizer] = {
    "llama-bpe": PreTokenizer((LLAMA3_REGEX,), clean_spaces=True, ignore_merges=True),
    "dbrx": PreTokenizer((LLAMA3_REGEX,), clean_spaces=True),
    "qwen2": PreTokenizer((QWEN2_REGEX,), clean_spaces=False),
    "stablelm2": PreTokenizer((QWEN2_REGEX,), clean_spaces=True),
    "qwen35": PreTokenizer((QWEN35_REGEX,), clean_spaces=False),
    "gpt-2": PreTokenizer((GPT2_REGEX,), clean_spaces=True),
    "trillion": PreTokenizer((GPT2_REGEX,), clean_spaces=False),
    "starcoder": PreTokenizer((DIGIT_REGEX, GPT2_REGEX), clean_spaces=True),
    "command-r": PreTokenizer((DIGIT_REGEX, GPT2_REGEX), clean_spaces=False),
    "falcon": PreTokenizer((PUNCT_REGEX, GPT2_REGEX, DIGITS_REGEX, "[0-9][0-9][0-9]"), clean_spaces=True),
    "deepseek-llm": PreTokenizer(DEEPSEEK_LLM, clean_spaces=False),
    "deepseek-coder": PreTokenizer(DEEPSEEK_CODER, clean_spaces=False),
}

END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>")
# Normalizers of byte-level tokenizers llama.cpp cannot apply: what each one does, to say what llama.cpp would need.
_NORMALIZER_NEEDS = {
    "NFD": "NFD decomposition", "NFKC": "NFKC compatibility composition", "NFKD": "NFKD decomposition",
    "Lowercase": "lower-casing", "StripAccents": "accent stripping", "Strip": "whitespace stripping",
    "Replace": "string replacement", "Prepend": "a prepended string", "Precompiled": "a SentencePiece charsmap",
    "BertNormalizer": "BERT's cleaning, CJK spacing and lower-casing", "ByteLevel": "a byte-level normalizer",
}


def _canon(regex: str) -> str:
    # NFC: llama.cpp's copies of some regexes (DeepSeek's) are NFC-normalized, which changes range end points
    return unicodedata.normalize("NFC", regex.replace(_CONTRACTIONS_CPP, _CONTRACTIONS_HF))


def _split_regexes(pre: dict | None) -> tuple[str, ...]:
    """The split steps of a byte-level pre-tokenizer as regexes, or raise saying which part llama.cpp cannot express."""
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
            out.append(DIGIT_REGEX if p.get("individual_digits") else DIGITS_REGEX)
        elif kind == "Punctuation":
            if p.get("behavior", "Isolated") != "Contiguous":
                raise DownsizeError(f"the tokenizer's Punctuation pre-tokenizer uses behavior={p.get('behavior')}",
                                    hint="llama.cpp reproduces Punctuation(behavior=Contiguous) only (Falcon's)")
            out.append(PUNCT_REGEX)
        elif kind == "ByteLevel":
            if p.get("add_prefix_space"):
                raise DownsizeError("the tokenizer's ByteLevel pre-tokenizer adds a prefix space",
                                    hint="llama.cpp's byte-level BPE never adds one; no pre-tokenizer matches")
            if p.get("use_regex", True):
                out.append(GPT2_REGEX)
        else:
            raise DownsizeError(f"the tokenizer uses a {kind} pre-tokenizer, which llama.cpp cannot reproduce",
                                hint="supported: Split(regex), Digits, Punctuation(Contiguous), ByteLevel")
    return tuple(out)


def detect_pretokenizer(tokenizer_json: dict, clean_up_spaces: bool | None = None) -> str:
    """The llama.cpp pre-tokenizer name that splits text like this tokenizer; refuse clearly when none does.

    Among the names with the same split steps, the one whose ignore_merges equals the BPE model's and whose
    clean_spaces equals ``clean_up_spaces`` (tokenizer_config.json's clean_up_tokenization_spaces) wins; ``None``
    (or no such name) takes the first with the same steps, and says what then differs."""
    regexes = _split_regexes(tokenizer_json.get("pre_tokenizer"))
    ignore_merges = bool(tokenizer_json.get("model", {}).get("ignore_merges", False))
    same = [(n, p) for n, p in KNOWN_PRETOKENIZERS.items() if tuple(_canon(r) for r in p.regexes) == regexes]
    if not same:
        shown = " then ".join(repr(r) for r in regexes) or "(none)"
        raise DownsizeError(f"no llama.cpp pre-tokenizer splits text like this tokenizer: its split steps are {shown}",
                            hint=f"llama.cpp knows {', '.join(KNOWN_PRETOKENIZERS)} (among others); llama.cpp would "
                                 "need a new pre-tokenizer type with these regexes in llama-vocab.cpp (or retrain the "
                                 "tokenizer with one of the known pipelines)")
    flags = [(n, p) for n, p in same if p.ignore_merges == ignore_merges]
    if not flags:
        name, p = same[0]
        log.warning("llama.cpp's %r pre-tokenizer has ignore_merges=%s but this tokenizer's BPE has %s: words that "
                    "are tokens may tokenize differently", name, p.ignore_merges, ignore_merges)
        flags = same
    exact = [n for n, p in flags if clean_up_spaces is None or p.clean_spaces == clean_up_spaces]
    if exact:
        return exact[0]
    name, p = flags[0]
    log.warning("llama.cpp's %r pre-tokenizer %s the space before punctuation when detokenizing, while the "
                "tokenizer's clean_up_tokenization_spaces is %s", name, "drops" if p.clean_spaces else "keeps",
                clean_up_spaces)
    return name


def check_normalizer(normalizer: dict | None) -> None:
    """Refuse a byte-level tokenizer's normalizer that llama.cpp cannot apply; warn about NFC, which it does not
    apply either but which leaves text already in NFC (almost all text) unchanged."""
    if normalizer is None:
        return
    steps = normalizer["normalizers"] if normalizer.get("type") == "Sequence" else [normalizer]
    for step in steps:
        kind = step.get("type")
        if kind == "NFC":
            log.warning("the tokenizer normalizes text to NFC; llama.cpp does not normalize, so text that is not "
                        "already NFC (e.g. decomposed accents) tokenizes differently in the GGUF")
            continue
        needs = _NORMALIZER_NEEDS.get(kind, f"the {kind} normalizer")
        raise DownsizeError(f"the tokenizer's {kind} normalizer cannot be written to GGUF: llama.cpp's byte-level BPE "
                            "tokenizer applies no normalizer, so the GGUF would tokenize text differently",
                            hint=f"llama.cpp would need {needs} before its pre-tokenizer; normalize text before "
                                 "tokenizing and remove the normalizer from tokenizer.json, or use a tokenizer without it")


def _looks_special(text: str) -> bool:
    """llama.cpp's converter types these added tokens as control tokens even when tokenizer.json says special=False
    (does_token_look_special in convert_hf_to_gguf.py)."""
    return (text in ("<pad>", "<mask>", "<2mass>", "[@BOS@]") or (text.startswith("<|") and text.endswith("|>"))
            or (text.startswith("<｜") and text.endswith("｜>")) or (text.startswith("<unused") and text.endswith(">")))


def is_sentencepiece(tj: dict) -> bool:
    """A SentencePiece-style BPE: byte fallback, no byte-level step (tokenizer.json converted from tokenizer.model)."""
    model, pre = tj.get("model", {}), tj.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    return model.get("type") == "BPE" and bool(model.get("byte_fallback")) and not any(
        s.get("type") == "ByteLevel" for s in steps)


def _spm_prefix_space(tj: dict) -> bool:
    """Whether the SentencePiece-style pipeline puts "▁" in front of the text (llama.cpp's add_space_prefix);
    refuse pipeline steps llama.cpp's SentencePiece tokenizer cannot reproduce."""
    norm, pre = tj.get("normalizer"), tj.get("pre_tokenizer")
    prefix = False
    steps = (norm.get("normalizers", [norm]) if norm.get("type") == "Sequence" else [norm]) if norm else []
    for step in steps:
        kind = step.get("type")
        if kind == "Prepend" and step.get("prepend") == SPIECE:
            prefix = True
        elif kind == "Replace" and step.get("pattern", {}).get("String") == " " and step.get("content") == SPIECE:
            pass
        else:
            needs = _NORMALIZER_NEEDS.get(kind, f"the {kind} normalizer")
            raise DownsizeError(f"the SentencePiece tokenizer's {kind} normalizer cannot be written to GGUF",
                                hint=f"llama.cpp's SentencePiece tokenizer only escapes spaces as '▁' and optionally "
                                     f"prepends one; it would need {needs}")
    psteps = (pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]) if pre else []
    for step in psteps:
        if step.get("type") == "Metaspace" and step.get("replacement", SPIECE) == SPIECE and not step.get("split", False):
            if step.get("prepend_scheme", "always") in ("always", "first"):
                prefix = True
                # tokenizers' Metaspace adds no "▁" to text that already starts with one; llama.cpp always adds it
                log.warning("the tokenizer's Metaspace pre-tokenizer prepends '▁' only to text not starting with a "
                            "space; llama.cpp's SentencePiece tokenizer always prepends it (as Llama 2's original "
                            "tokenizer did), so text that starts with a space tokenizes differently in the GGUF")
        else:
            raise DownsizeError(f"the SentencePiece tokenizer's {step.get('type')} pre-tokenizer cannot be written to GGUF",
                                hint="llama.cpp's SentencePiece tokenizer splits nothing before merging; it reproduces "
                                     "Metaspace(split=false) only")
    return prefix


def read_sentencepiece(path: Path) -> list[tuple[str, float, int]]:
    """(piece, score, type) of each piece of a SentencePiece tokenizer.model -- a ModelProto whose field 1 repeats
    SentencePiece {1: piece, 2: score, 3: type} -- read directly (the sentencepiece package is not needed)."""
    buf = path.read_bytes()

    def varint(b: bytes, i: int) -> tuple[int, int]:
        shift = out = 0
        while True:
            c = b[i]
            out |= (c & 0x7F) << shift
            i += 1
            if c < 0x80:
                return out, i
            shift += 7

    def fields(b: bytes):
        i = 0
        while i < len(b):
            key, i = varint(b, i)
            num, wire = key >> 3, key & 7
            if wire == 0:
                val, i = varint(b, i)
            elif wire == 1:
                val, i = b[i:i + 8], i + 8
            elif wire == 2:
                n, i = varint(b, i)
                val, i = b[i:i + n], i + n
            elif wire == 5:
                val, i = b[i:i + 4], i + 4
            else:
                raise ValueError(f"unsupported protobuf wire type {wire}")
            yield num, wire, val

    pieces = []
    try:
        for num, wire, val in fields(buf):
            if num != 1 or wire != 2:
                continue
            piece, score, kind = "", 0.0, 1  # proto defaults: score 0, type NORMAL
            for n2, w2, v2 in fields(val):
                if n2 == 1 and w2 == 2:
                    piece = v2.decode("utf-8")
                elif n2 == 2 and w2 == 5:
                    score = struct.unpack("<f", v2)[0]
                elif n2 == 3 and w2 == 0:
                    kind = v2
            pieces.append((piece, score, kind))
    except (IndexError, ValueError, UnicodeDecodeError) as e:
        raise DownsizeError(f"{path} is not a SentencePiece model ({e})",
                            hint="re-save the tokenizer (tokenizer.save_pretrained) or remove the broken file") from None
    return pieces


# SentencePiece piece types (sentencepiece_model.proto) -> GGUF token types; they share numbers 1-6.
_SP_TYPES = {1: gguf.TokenType.NORMAL, 2: gguf.TokenType.UNKNOWN, 3: gguf.TokenType.CONTROL,
             4: gguf.TokenType.USER_DEFINED, 5: gguf.TokenType.UNUSED, 6: gguf.TokenType.BYTE}
_BYTE_PIECE = re.compile(r"<0x[0-9A-Fa-f]{2}>")


def _merge_scores(vocab: dict[str, int], merges: list) -> tuple[dict[str, float], int]:
    """Scores that make llama.cpp's SentencePiece merging (highest-scoring pair first) pick the merges in
    tokenizer.json's order: minus the rank of the first merge that makes each piece. Also counts pairs whose
    concatenation is a piece but which tokenizer.json never merges (llama.cpp would merge them)."""
    score: dict[str, float] = {}
    pairs = set()
    for rank, m in enumerate(merges):
        left, right = m.split(" ", 1) if isinstance(m, str) else m
        pairs.add((left, right))
        score.setdefault(left + right, -float(rank))
    unmerged = 0
    for piece in vocab:
        for k in range(1, len(piece)):
            left = piece[:k]
            if left in vocab:
                right = piece[k:]
                if right in vocab and (left, right) not in pairs:
                    unmerged += 1
    return score, unmerged


def _write_sentencepiece(w: gguf.GGUFWriter, root: Path, tj: dict, tok, n: int) -> tuple[dict[str, int], list[str]]:
    """tokens, scores and types of a SentencePiece-style tokenizer as llama.cpp's converter writes them
    (_create_vocab_sentencepiece): the pieces of tokenizer.model when present, else of tokenizer.json."""
    prefix = _spm_prefix_space(tj)
    model = tj["model"]
    vocab: dict[str, int] = dict(model["vocab"])
    added = {t["content"]: t for t in tj.get("added_tokens", [])}
    for content, t in added.items():
        vocab[content] = t["id"]
    n = max(n, max(vocab.values()) + 1)
    tokens = [f"[PAD{i}]" for i in range(n)]
    scores = [-10000.0] * n
    types = [gguf.TokenType.UNUSED] * n
    unk = tok.token_id(tok.special.get("unk_token"))
    sp_path = root / TOKENIZER_MODEL
    sp_pieces: dict[int, str] = {}
    if sp_path.exists():
        for i, (piece, score, kind) in enumerate(read_sentencepiece(sp_path)[:n]):
            tokens[i], scores[i], types[i] = piece, score, _SP_TYPES.get(kind, gguf.TokenType.NORMAL)
            sp_pieces[i] = piece
        how = TOKENIZER_MODEL
    else:
        merge_score, unmerged = _merge_scores(model["vocab"], model.get("merges", []))
        if unmerged:
            log.warning("%d pairs of pieces join into a piece that tokenizer.json never merges; llama.cpp's "
                        "SentencePiece tokenizer merges them, so some words may tokenize differently", unmerged)
        for text, i in model["vocab"].items():
            tokens[i], scores[i] = text, merge_score.get(text, 0.0)
            types[i] = gguf.TokenType.BYTE if _BYTE_PIECE.fullmatch(text) else gguf.TokenType.NORMAL
        if unk is not None:
            types[unk] = gguf.TokenType.UNKNOWN
        how = "tokenizer.json merges"
    for content, t in added.items():  # as the converter reads added_tokens_decoder of tokenizer_config.json
        i = t["id"]
        if sp_pieces.get(i) == content and types[i] in (gguf.TokenType.CONTROL, gguf.TokenType.UNKNOWN):
            continue  # tokenizer.model's own <s>, </s>, <unk>: its score and type stand
        if i == unk:
            types[i] = gguf.TokenType.UNKNOWN
        elif t.get("special") or _looks_special(content):
            types[i] = gguf.TokenType.CONTROL
        else:
            content = content.replace(SPIECE, " ")  # llama.cpp matches user-defined tokens on raw text
            types[i] = gguf.TokenType.USER_DEFINED
        tokens[i], scores[i] = content, -1000.0
    w.add_tokenizer_model(GGUF_SPM)
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types([int(t) for t in types])
    w.add_add_space_prefix(prefix)
    return vocab, [how, f"add_space_prefix={prefix}"]


def _write_bpe(w: gguf.GGUFWriter, tj: dict, tok, n: int) -> tuple[dict[str, int], str]:
    model = tj["model"]
    check_normalizer(tj.get("normalizer"))
    pre = detect_pretokenizer(tj, tok.clean_up_spaces)
    vocab: dict[str, int] = dict(model["vocab"])
    added = {t["content"]: t for t in tj.get("added_tokens", [])}
    for content, t in added.items():
        vocab[content] = t["id"]
    n = max(n, max(vocab.values()) + 1)
    tokens = [f"[PAD{i}]" for i in range(n)]
    types = [gguf.TokenType.UNUSED] * n
    for text, i in vocab.items():
        tokens[i] = text
        if text in added:
            # as llama.cpp's converter: "<|...|>"-looking added tokens are control tokens even when tokenizer.json
            # says special=False (Qwen2's <|fim_*|>, <|repo_name|>, <|file_sep|>)
            special = added[text].get("special") or _looks_special(text)
            types[i] = gguf.TokenType.CONTROL if special else gguf.TokenType.USER_DEFINED
        else:
            types[i] = gguf.TokenType.NORMAL
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    w.add_tokenizer_model(GGUF_BPE)
    w.add_tokenizer_pre(pre)
    w.add_token_list(tokens)
    w.add_token_types([int(t) for t in types])
    w.add_token_merges(merges)
    return vocab, pre


def _config_id(cfg, key: str) -> int | None:
    v = getattr(cfg, key, None)
    return v[0] if isinstance(v, list) and v else v if isinstance(v, int) else None


def write_tokenizer(w: gguf.GGUFWriter, root: Path, cfg) -> dict:
    """Write tokenizer.* keys for the tokenizer in ``root``; returns a summary (model, pre, special ids)."""
    tok = load_tokenizer(Path(root), cfg)
    # The tokenizer as transformers really runs it: for some model types (e.g. qwen2) transformers replaces the
    # pre-tokenizer of tokenizer.json with the family's own, and the GGUF must split text the way HF does.
    tj = json.loads(tok.backend.to_str())
    model = tj.get("model", {})
    if model.get("type") != "BPE":
        raise DownsizeError(f"tokenizer model type {model.get('type')!r} is not supported",
                            hint="supported: byte-level BPE and SentencePiece-style BPE with byte fallback "
                                 "(Unigram and WordPiece tokenizers would need llama.cpp's t5/bert vocabularies)")
    n_cfg = int(getattr(cfg, "vocab_size", 0) or 0)
    if is_sentencepiece(tj):
        vocab, notes = _write_sentencepiece(w, Path(root), tj, tok, n_cfg)
        kind, pre = GGUF_SPM, "default"
    else:
        vocab, pre = _write_bpe(w, tj, tok, n_cfg)
        kind, notes = GGUF_BPE, []
    n = max(n_cfg, max(vocab.values()) + 1)

    ids = {k: tok.token_id(tok.special.get(f"{k}_token")) for k in ("bos", "eos", "pad", "unk")}
    for k in ("bos", "eos", "pad"):  # as llama.cpp's converter: config.json's ids when the tokenizer names none
        if ids[k] is None:
            ids[k] = _config_id(cfg, f"{k}_token_id")
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
    return {"model": kind, "pre": pre, "n_tokens": n, "add_bos": add_bos, "eot": eot, **ids,
            "chat_template": bool(template), "loaded_with": tok.how, **({"scores_from": notes[0]} if notes else {})}
