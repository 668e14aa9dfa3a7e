"""Hugging Face tokenizer folders rebuilt from llama.cpp's own tokenizer test vocabularies (the sdist's
``models/ggml-vocab-*.gguf`` with ``.inp`` strings and ``.out`` ids, which the original HF tokenizers produced).

Each GGUF holds the tokens, token types, merges (BPE) or scores (SentencePiece) that llama.cpp's converter wrote
from the original model; ``FAMILIES`` adds what the GGUF does not hold -- the model family's real tokenizer.json
pipeline (normalizer, pre-tokenizer, decoder, BOS post-processor) and tokenizer_config.json -- so the rebuilt
tokenizer can be checked against the ``.out`` ids before anything is exported from it.

    from ggml_vocab import VOCABS, build_folder, load_cases
    folder = build_folder("deepseek-coder", tmp_path / "dsc")   # tokenizer.json, tokenizer_config.json, config + weights
    cases = load_cases("deepseek-coder")                         # [(text, ids), ...]

Used by tests/export/test_ggml_vocab.py and benchmarks/export_tokenizers.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
from sdist import llama_cpp_dir

# The pre-tokenizer regexes as the models' tokenizer.json files spell them: the converter's own table (the .out ids
# of llama.cpp's files are what checks them).
from downsize.export.gguf.vocab import CJK_REGEX as CJK
from downsize.export.gguf.vocab import DEEPSEEK_LETTERS, SPIECE
from downsize.export.gguf.vocab import LLAMA3_REGEX as LLAMA3
from downsize.export.gguf.vocab import QWEN2_REGEX as QWEN2
from downsize.export.gguf.vocab import QWEN35_REGEX as QWEN35

SEPARATOR = "\n__ggml_vocab_test__\n"
TOKEN_NORMAL, TOKEN_UNKNOWN, TOKEN_CONTROL, TOKEN_USER, TOKEN_UNUSED, TOKEN_BYTE = 1, 2, 3, 4, 5, 6

GPT2_SPLIT = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
BYTES_ONLY = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}
DIGITS = {"type": "Digits", "individual_digits": True}
NFC = {"type": "NFC"}


def _split(regex: str) -> dict:
    return {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": False}


def _seq(*steps: dict) -> dict:
    return {"type": "Sequence", "pretokenizers": list(steps)}




FAST = "PreTrainedTokenizerFast"


@dataclass(frozen=True)
class Family:
    """What a model family's tokenizer folder holds beyond the GGUF's tokens: its real tokenizer.json pipeline."""

    arch: str                     # downsize family used for the tiny model the tokenizer is exported with
    pre_tokenizer: dict | None
    normalizer: dict | None = None
    spm: bool = False             # SentencePiece-style: BPE with byte fallback over "▁" pieces, merges from scores
    prefix_space: bool = True     # (spm) the Prepend("▁") of Llama 2 / Phi-3; Gemma has none
    ignore_merges: bool = False
    bos_added: bool = False       # the post-processor puts BOS in front (Llama 3, Llama 2, DeepSeek, Command-R)
    # tokenizer_config.json entries. The tokenizer class is the pass-through one (tokenizer.json as saved) except for
    # Qwen2, whose AutoTokenizer always rebuilds the pipeline: transformers 5 rebuilds e.g. a declared
    # LlamaTokenizerFast (DeepSeek's) as SentencePiece, which would test transformers rather than the vocabulary.
    config: dict = field(default_factory=dict)
    llama_cpp_arch: str | None = None  # the HF architecture llama.cpp's converter needs for this vocabulary


FAMILIES: dict[str, Family] = {
    "gpt-2": Family("llama", GPT2_SPLIT, config={"tokenizer_class": FAST, "clean_up_tokenization_spaces": True}),
    "mpt": Family("llama", GPT2_SPLIT, NFC, config={"tokenizer_class": FAST, "clean_up_tokenization_spaces": True}),
    "llama-bpe": Family("llama", _seq(_split(LLAMA3), BYTES_ONLY), ignore_merges=True, bos_added=True,
                        config={"tokenizer_class": FAST, "clean_up_tokenization_spaces": True}),
    "qwen2": Family("qwen2", _seq(_split(QWEN2), BYTES_ONLY), NFC,
                    config={"tokenizer_class": "Qwen2Tokenizer", "clean_up_tokenization_spaces": False}),
    "qwen35": Family("qwen3", _seq(_split(QWEN35), BYTES_ONLY),
                     config={"tokenizer_class": FAST, "clean_up_tokenization_spaces": False}),
    "starcoder": Family("llama", _seq(DIGITS, GPT2_SPLIT),
                        config={"tokenizer_class": FAST, "clean_up_tokenization_spaces": True}),
    "refact": Family("llama", _seq(DIGITS, GPT2_SPLIT),
                     config={"tokenizer_class": FAST, "clean_up_tokenization_spaces": True}),
    "command-r": Family("llama", _seq(DIGITS, GPT2_SPLIT), NFC, bos_added=True,
                        config={"tokenizer_class": FAST, "clean_up_tokenization_spaces": False}),
    "falcon": Family("llama", _seq({"type": "Punctuation", "behavior": "Contiguous"}, GPT2_SPLIT,
                                   {"type": "Digits", "individual_digits": False}, _split("[0-9][0-9][0-9]")),
                     config={"tokenizer_class": FAST, "clean_up_tokenization_spaces": True}),
    "deepseek-llm": Family("llama", _seq(_split("[\r\n]"), _split(f"\\s?[{DEEPSEEK_LETTERS}]+"),
                                         _split("\\s?[!-/:-~\uff01-\uff0f\uff1a-\uff5e\u2018-\u201f\u3000-\u3002]+"),
                                         _split("\\s+$"), _split(CJK), {"type": "Digits", "individual_digits": False},
                                         BYTES_ONLY),
                           bos_added=True,
                           config={"tokenizer_class": FAST, "clean_up_tokenization_spaces": False}),
    "deepseek-coder": Family("llama", _seq(_split("[\r\n]"), _split("\\s?\\p{L}+"), _split("\\s?\\p{P}+"), _split(CJK),
                                           DIGITS, BYTES_ONLY),
                             bos_added=True,
                             config={"tokenizer_class": FAST, "clean_up_tokenization_spaces": False}),
    "llama-spm": Family("llama", None, spm=True, bos_added=True,
                        config={"tokenizer_class": FAST, "clean_up_tokenization_spaces": False}),
    "phi-3": Family("phi3", None, spm=True, bos_added=True,
                    config={"tokenizer_class": FAST, "clean_up_tokenization_spaces": False}),
    "gemma-4": Family("gemma3", None, spm=True, prefix_space=False, bos_added=False,
                      config={"tokenizer_class": FAST, "clean_up_tokenization_spaces": False}),
}
# bert-bge is a WordPiece encoder vocabulary (BertModel): no decoder family downsize exports uses it.
NOT_A_SUPPORTED_FAMILY = {"bert-bge": "a WordPiece (BERT encoder) vocabulary; downsize exports decoder LLMs only"}
VOCABS = sorted(FAMILIES)


def models_dir() -> Path:
    return llama_cpp_dir() / "models"


def load_cases(name: str) -> list[tuple[str, list[int]]]:
    """The (text, ids) pairs of ggml-vocab-NAME.gguf.inp/.out, split exactly as llama.cpp's test reads them."""
    base = models_dir() / f"ggml-vocab-{name}.gguf"
    texts = base.with_suffix(".gguf.inp").read_text(encoding="utf-8").split(SEPARATOR)
    if texts and texts[-1] == "":
        texts = texts[:-1]
    outs = base.with_suffix(".gguf.out").read_text(encoding="utf-8").split("\n")[: len(texts)]
    return [(t, [int(x) for x in o.split()]) for t, o in zip(texts, outs)]


@dataclass
class GgufVocab:
    tokens: list[str]
    types: list[int]
    scores: list[float] | None
    merges: list[str] | None
    special: dict[str, int]  # bos/eos/unk/pad -> id


# GGUF metadata value types (gguf-py GGUFValueType) -> struct format; 8 = string, 9 = array.
_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}


def read_metadata(path: Path) -> dict:
    """The key/value metadata of a GGUF file. A direct reader: gguf-py's GGUFReader builds a numpy object per
    string, which takes about a minute for a 256k-token vocabulary; this takes a fraction of a second."""
    import struct

    buf = memoryview(path.read_bytes())
    if bytes(buf[:4]) != b"GGUF":
        raise ValueError(f"{path} is not a GGUF file")
    _version, _n_tensors, n_kv = struct.unpack_from("<IQQ", buf, 4)
    pos = 24

    def string() -> str:
        nonlocal pos
        (n,) = struct.unpack_from("<Q", buf, pos)
        pos += 8 + n
        return bytes(buf[pos - n:pos]).decode("utf-8", errors="surrogateescape")

    def value(kind: int):
        nonlocal pos
        if kind == 8:
            return string()
        if kind == 9:
            (sub, n) = struct.unpack_from("<IQ", buf, pos)
            pos += 12
            if sub in _SCALARS:
                fmt = _SCALARS[sub]
                out = list(struct.unpack_from(f"<{n}{fmt}", buf, pos))
                pos += n * struct.calcsize(fmt)
                return out
            return [value(sub) for _ in range(n)]
        fmt = _SCALARS[kind]
        (v,) = struct.unpack_from("<" + fmt, buf, pos)
        pos += struct.calcsize(fmt)
        return v

    meta = {}
    for _ in range(n_kv):
        key = string()
        (kind,) = struct.unpack_from("<I", buf, pos)
        pos += 4
        meta[key] = value(kind)
    return meta


@lru_cache(maxsize=None)
def read_vocab(name: str) -> GgufVocab:
    meta = read_metadata(models_dir() / f"ggml-vocab-{name}.gguf")
    special = {k: meta.get(f"tokenizer.ggml.{key}") for k, key in
               (("bos", "bos_token_id"), ("eos", "eos_token_id"), ("unk", "unknown_token_id"), ("pad", "padding_token_id"))}
    return GgufVocab(meta["tokenizer.ggml.tokens"], meta["tokenizer.ggml.token_type"], meta.get("tokenizer.ggml.scores"),
                     meta.get("tokenizer.ggml.merges"), {k: v for k, v in special.items() if v is not None})


def _sp_merges(tokens: list[str], types: list[int], scores: list[float]) -> list[list[str]]:
    """BPE merges of a SentencePiece BPE vocabulary, as transformers' SentencePiece converter derives them: every
    split of a piece into two pieces of the vocabulary, by the merged piece's score (highest first), then by the
    two halves' ids."""
    vocab = {t: i for i, t in enumerate(tokens) if types[i] in (TOKEN_NORMAL, TOKEN_USER)}
    merges = []
    for piece, i in vocab.items():
        local = [(piece[:k], piece[k:]) for k in range(1, len(piece)) if piece[:k] in vocab and piece[k:] in vocab]
        local.sort(key=lambda lr: (vocab[lr[0]], vocab[lr[1]]))
        merges.extend((scores[i], m) for m in local)
    merges.sort(key=lambda sm: -sm[0])  # stable: ties keep the id order above
    return [list(m) for _, m in merges]


def tokenizer_json(name: str) -> dict:
    """tokenizer.json of vocabulary ``name``: the GGUF's tokens and merges in its family's real pipeline."""
    fam, v = FAMILIES[name], read_vocab(name)
    added, vocab = [], {}
    for i, (t, ty) in enumerate(zip(v.tokens, v.types)):
        if t == f"[PAD{i}]":
            continue  # the converter's padding up to the embedding rows
        # added tokens stay in the model's vocabulary too (as in the original files), so their ids are kept
        vocab[t] = i
        if ty in (TOKEN_CONTROL, TOKEN_USER) or (fam.spm and ty == TOKEN_UNKNOWN):
            added.append({"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
                          "normalized": ty == TOKEN_USER, "special": ty != TOKEN_USER})
    if fam.spm:
        merges = [m.split(" ", 1) for m in v.merges] if v.merges else _sp_merges(v.tokens, v.types, v.scores)
        unk = v.tokens[v.special["unk"]] if "unk" in v.special else None
        model = {"type": "BPE", "dropout": None, "unk_token": unk, "continuing_subword_prefix": None,
                 "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": True, "ignore_merges": False,
                 "vocab": vocab, "merges": merges}
        steps = ([{"type": "Prepend", "prepend": SPIECE}] if fam.prefix_space else []) + \
                [{"type": "Replace", "pattern": {"String": " "}, "content": SPIECE}]
        normalizer = {"type": "Sequence", "normalizers": steps}
        decoder = {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": SPIECE}, "content": " "}, {"type": "ByteFallback"}, {"type": "Fuse"}]
            + ([{"type": "Strip", "content": " ", "start": 1, "stop": 0}] if fam.prefix_space else [])}
    else:
        model = {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                 "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False,
                 "ignore_merges": fam.ignore_merges, "vocab": vocab, "merges": [m.split(" ", 1) for m in v.merges]}
        normalizer = fam.normalizer
        decoder = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}
    post = None
    if fam.bos_added:
        bos = v.tokens[v.special["bos"]]
        post = {"type": "TemplateProcessing",
                "single": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                "pair": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                         {"SpecialToken": {"id": bos, "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
                "special_tokens": {bos: {"id": bos, "ids": [v.special["bos"]], "tokens": [bos]}}}
    elif not fam.spm:
        post = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True}
    return {"version": "1.0", "truncation": None, "padding": None, "added_tokens": added, "normalizer": normalizer,
            "pre_tokenizer": fam.pre_tokenizer, "post_processor": post, "decoder": decoder, "model": model}


def tokenizer_config(name: str) -> dict:
    fam, v = FAMILIES[name], read_vocab(name)
    cfg = dict(fam.config)
    for key in ("bos", "eos", "unk", "pad"):
        if key in v.special:
            cfg[f"{key}_token"] = v.tokens[v.special[key]]
    if name == "qwen2":
        cfg["bos_token"] = None  # Qwen2's tokenizer_config.json names no BOS
    cfg["model_max_length"] = 4096
    return cfg


def write_tokenizer(name: str, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "tokenizer.json").write_text(json.dumps(tokenizer_json(name), ensure_ascii=False), encoding="utf-8")
    (dest / "tokenizer_config.json").write_text(json.dumps(tokenizer_config(name), ensure_ascii=False), encoding="utf-8")
    return dest


def write_sentencepiece_model(name: str, dest: Path) -> Path:
    """tokenizer.model (a SentencePiece BPE ModelProto) with the GGUF's pieces, scores and types -- what llama.cpp's
    converter reads for Llama 2 / Phi-3 / Gemma. Built with transformers' copy of the proto (protobuf only)."""
    from transformers.utils import sentencepiece_model_pb2_new as pb

    fam, v = FAMILIES[name], read_vocab(name)
    m = pb.ModelProto()
    kinds = {TOKEN_NORMAL: 1, TOKEN_UNKNOWN: 2, TOKEN_CONTROL: 3, TOKEN_USER: 4, TOKEN_BYTE: 6, TOKEN_UNUSED: 5}
    for i, (t, ty, s) in enumerate(zip(v.tokens, v.types, v.scores)):
        if t == f"[PAD{i}]":  # the converter's padding, at the end: not a piece of the model
            continue
        assert len(m.pieces) == i, "padding before the last piece would shift the ids"
        p = m.pieces.add()
        p.piece, p.score, p.type = t, float(s), kinds[ty]
    m.trainer_spec.model_type = 2  # BPE
    m.trainer_spec.byte_fallback = True
    m.trainer_spec.vocab_size = len(m.pieces)
    for key, attr in (("unk", "unk_id"), ("bos", "bos_id"), ("eos", "eos_id")):
        setattr(m.trainer_spec, attr, int(v.special.get(key, -1)))
    m.trainer_spec.pad_id = -1
    m.normalizer_spec.name = "identity"
    m.normalizer_spec.add_dummy_prefix = fam.prefix_space
    m.normalizer_spec.remove_extra_whitespaces = False
    m.normalizer_spec.escape_whitespaces = True
    (dest / "tokenizer.model").write_bytes(m.SerializeToString())
    return dest


TINY = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
            max_position_embeddings=128)
FAMILY_EXTRAS = {"gemma3": dict(head_dim=16, query_pre_attn_scalar=16, layer_types=["full_attention"], sliding_window=64),
                 "qwen3": dict(head_dim=16), "phi3": dict(pad_token_id=None)}


def write_model(name: str, dest: Path, seed: int = 0) -> Path:
    """config.json and tied random weights of a one-layer model of the vocabulary's family (numpy, no torch model)."""
    from safetensors.numpy import save_file

    from downsize.models.arch import build_config

    fam, v = FAMILIES[name], read_vocab(name)
    n = len(v.tokens)
    extra = dict(FAMILY_EXTRAS.get(fam.arch, {}))
    ids = {f"{k}_token_id": v.special[k] for k in ("bos", "eos", "pad") if k in v.special and k + "_token_id" not in extra}
    cfg = build_config(fam.arch, vocab_size=n, tie_word_embeddings=True, **TINY, **extra, **ids)
    cfg.save_pretrained(dest)
    cfgd = cfg.to_dict()
    h, f, hd = TINY["hidden_size"], TINY["intermediate_size"], cfgd.get("head_dim") or TINY["hidden_size"] // TINY["num_attention_heads"]
    q, kv = TINY["num_attention_heads"] * hd, TINY["num_key_value_heads"] * hd
    rng = np.random.default_rng(seed)
    t = {"model.embed_tokens.weight": (n, h), "model.norm.weight": (h,)}
    p = "model.layers.0."
    t.update({p + "input_layernorm.weight": (h,), p + "post_attention_layernorm.weight": (h,),
              p + "self_attn.o_proj.weight": (h, q), p + "mlp.down_proj.weight": (h, f)})
    if fam.arch == "phi3":
        t.update({p + "self_attn.qkv_proj.weight": (q + 2 * kv, h), p + "mlp.gate_up_proj.weight": (2 * f, h)})
    else:
        t.update({p + "self_attn.q_proj.weight": (q, h), p + "self_attn.k_proj.weight": (kv, h),
                  p + "self_attn.v_proj.weight": (kv, h), p + "mlp.gate_proj.weight": (f, h), p + "mlp.up_proj.weight": (f, h)})
    if fam.arch == "qwen2":
        t.update({p + "self_attn.q_proj.bias": (q,), p + "self_attn.k_proj.bias": (kv,), p + "self_attn.v_proj.bias": (kv,)})
    if fam.arch == "qwen3":
        t.update({p + "self_attn.q_norm.weight": (hd,), p + "self_attn.k_norm.weight": (hd,)})
    if fam.arch == "gemma3":
        t.update({p + "pre_feedforward_layernorm.weight": (h,), p + "post_feedforward_layernorm.weight": (h,),
                  p + "self_attn.q_norm.weight": (hd,), p + "self_attn.k_norm.weight": (hd,)})
    arrays = {k: (rng.standard_normal(s).astype(np.float32) * 0.02 if len(s) > 1 else np.ones(s, np.float32))
              for k, s in t.items()}
    save_file(arrays, str(dest / "model.safetensors"), metadata={"format": "pt"})
    return dest


def build_folder(name: str, dest: Path, sentencepiece_model: bool = False) -> Path:
    """A complete HF model folder for vocabulary ``name`` (tokenizer + a tiny model of its family)."""
    write_tokenizer(name, dest)
    if sentencepiece_model and FAMILIES[name].spm:
        write_sentencepiece_model(name, dest)
    write_model(name, dest)
    return dest
