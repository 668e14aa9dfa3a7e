"""Peak memory of each stage from model configs alone (no weights): will 32B -> 3B fit, and what to change if not.

    >>> from downsize.models.memory import Device, ModelShape, estimate_stage_memory
    >>> teacher = ModelShape.from_config({"hidden_size": 5120, "num_hidden_layers": 64, "num_attention_heads": 40,
    ...     "num_key_value_heads": 8, "intermediate_size": 27648, "vocab_size": 152064, "tie_word_embeddings": False})
    >>> round(teacher.params / 1e9, 1)
    32.8
    >>> student = ModelShape.from_config({"hidden_size": 2048, "num_hidden_layers": 36, "num_attention_heads": 16,
    ...     "num_key_value_heads": 2, "intermediate_size": 11008, "vocab_size": 151936, "tie_word_embeddings": True})
    >>> est = estimate_stage_memory("distill", {"batch_size": 2, "seq_len": 2048}, student, teacher, Device.parse("cuda:80"))
    >>> est.fits, sorted(est.parts)[:3]
    (False, ['activations', 'grads', 'kd_logits'])
    >>> est.suggestions[0]
    'teacher on a server (vLLM/llama.cpp serving logprobs; no teacher weights here) -> 71.1 GiB, fits'

``plan_memory(recipe, device)`` walks a recipe (configs from Hub ids via the cache or a config.json-only
download, local folders or config.json files) and returns one ``MemoryEstimate`` per stage.

What is counted (bytes; the constants below say why each number is what it is):
- weights: as the code loads them today: students and pruning/imatrix/eval models in fp32 (4 B/param), an
  online teacher in ``teacher_dtype`` (bf16, 2 B), a QLoRA base in NF4 (~0.56 B with its scales);
- grads + optimizer: fp32 grads (4 B) and AdamW's two moments (8 B) for every trained parameter (all of them
  for full fine-tuning, the adapters for LoRA); divided across GPUs with FSDP;
- activations kept for backward: per token and layer ``ACT_ELEMS`` elements (residual stream and norms in fp32,
  matmul outputs in the autocast dtype), memory-efficient attention (no T x T matrix);
- KD logit chunks: the loss walks ``chunk_size`` tokens at a time through the LM head, so ~``KD_CHUNK_COPIES``
  (chunk, V) fp32 temporaries, not (tokens, V);
- per stage kind its own phases (offline KD: the cache-writing pass, then training without the teacher; the
  quantize stage: the importance-matrix pass over the float model, then layer-by-layer conversion).
Accuracy: a real 2-step distill run (16M-param student and teacher, fp32, batch 4 x 256) peaked at 1.07-1.14x the
estimate (RSS on CPU above the process with torch and transformers imported; tests/foundation/test_memory.py
asserts within 1.5x); the
framework's own footprint (``RUNTIME_BYTES``) is added once.

Why this module is long: one estimator per stage kind over the same shape and device model, and the
suggestions, which re-run those estimators with a setting changed.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace
from typing import Callable, Mapping

from downsize.errors import DownsizeError

GiB = 2**30
FP32, BF16 = 4, 2
NF4_BYTES = 0.5 + 4 / 64  # 4-bit codes plus one fp32 absmax per 64 weights (bitsandbytes' blocksize)
ADAMW_BYTES = 8  # exp_avg + exp_avg_sq in fp32
GRAD_BYTES = 4
KD_CHUNK_COPIES = 6  # student logits, log-softmax, probs, teacher log-probs, the difference and its gradient
EVAL_LOGIT_COPIES = 4  # logits, log-softmax and its exp for the model and the teacher window
RUNTIME_BYTES = int(0.6 * GiB)  # torch + transformers + CUDA context (or the CPU process baseline)
CONVERT_TENSOR_COPIES = 4  # a tensor streamed to GGUF: read, cast to fp32, quantize buffer, write buffer
DEFAULT_CHUNK = 256
GGUF_BITS = {"F32": 32, "F16": 16, "BF16": 16, "Q8_0": 8.5, "Q6_K": 6.56, "Q5_K_M": 5.69, "Q5_0": 5.5,
             "Q4_K_M": 4.89, "Q4_K_S": 4.58, "Q4_0": 4.5, "Q3_K_M": 3.91, "Q2_K": 3.35}


@dataclass(frozen=True)
class ModelShape:
    """What memory depends on, read from a config.json dict (text_config for multimodal wrappers)."""
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    tied: bool
    attention_bias: bool = False
    experts: int = 1  # MoE: experts per layer (all resident), experts_per_token active
    experts_per_token: int = 1

    @classmethod
    def from_config(cls, cfg: Mapping) -> "ModelShape":
        cfg = cfg.get("text_config", cfg) if isinstance(cfg.get("text_config"), Mapping) else cfg
        try:
            h, heads = int(cfg["hidden_size"]), int(cfg["num_attention_heads"])
            shape = cls(hidden=h, layers=int(cfg["num_hidden_layers"]), heads=heads,
                        kv_heads=int(cfg.get("num_key_value_heads") or heads),
                        head_dim=int(cfg.get("head_dim") or h // heads),
                        intermediate=int(cfg.get("moe_intermediate_size") or cfg["intermediate_size"]),
                        vocab=int(cfg["vocab_size"]), tied=bool(cfg.get("tie_word_embeddings", False)),
                        # Qwen2 has q/k/v biases without saying so in its config
                        attention_bias=bool(cfg.get("attention_bias", cfg.get("model_type") == "qwen2")),
                        experts=int(cfg.get("num_experts") or cfg.get("num_local_experts") or 1),
                        experts_per_token=int(cfg.get("num_experts_per_tok") or 1))
        except KeyError as e:
            raise DownsizeError(f"the model config has no {e.args[0]!r}, which memory planning needs",
                                hint="pass a decoder-only LM config (hidden_size, num_hidden_layers, num_attention_heads, "
                                     "intermediate_size, vocab_size)") from None
        return shape

    @property
    def q_dim(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    @property
    def layer_params(self) -> int:
        h = self.hidden
        attn = h * self.q_dim + 2 * h * self.kv_dim + self.q_dim * h
        if self.attention_bias:
            attn += self.q_dim + 2 * self.kv_dim
        mlp = 3 * h * self.intermediate * self.experts + (h * self.experts if self.experts > 1 else 0)  # + router
        return attn + mlp + 2 * h  # two RMSNorm weights

    @property
    def embed_params(self) -> int:
        return self.vocab * self.hidden * (1 if self.tied else 2)

    @property
    def params(self) -> int:
        return self.layers * self.layer_params + self.embed_params + self.hidden

    @property
    def largest_tensor(self) -> int:
        return max(self.vocab * self.hidden, self.hidden * self.intermediate * max(1, self.experts // 8))

    def lora_params(self, r: int) -> int:
        """Adapters on q, k, v, o, gate, up, down: r x (in + out) each."""
        h, ff = self.hidden, self.intermediate * self.experts
        per_layer = r * ((h + self.q_dim) * 2 + (h + self.kv_dim) * 2 + 3 * (h + ff))
        return self.layers * per_layer

    def act_elems(self) -> tuple[int, int]:
        """Activations kept for backward per token and layer: (fp32 elements, autocast-dtype elements)."""
        ff = self.intermediate * self.experts_per_token
        return 8 * self.hidden, 4 * self.q_dim + 4 * self.kv_dim + 4 * ff


@dataclass(frozen=True)
class Device:
    kind: str  # "cpu" or "cuda"
    memory_gb: float  # per device, in GiB (an "80 GB" GPU has 80 GiB)
    count: int = 1

    @classmethod
    def detect(cls) -> "Device":
        """The GPUs torch sees (memory of the first), else this machine's RAM."""
        try:
            import torch

            if torch.cuda.is_available():
                return cls("cuda", torch.cuda.get_device_properties(0).total_memory / GiB, torch.cuda.device_count())
        except Exception:  # planning must work without a usable CUDA runtime
            pass
        return cls.parse("cpu")

    @classmethod
    def parse(cls, spec: str) -> "Device":
        """``cpu`` (this machine's RAM), ``cpu:24``, ``cuda:80``, ``cuda:80x8`` (GiB per GPU x GPUs)."""
        kind, _, rest = spec.partition(":")
        if kind not in ("cpu", "cuda"):
            raise DownsizeError(f"unknown device {spec!r}", hint="write cpu, cpu:GB, cuda:GB or cuda:GBxN, e.g. cuda:80x8")
        try:
            if not rest:
                if kind == "cuda":
                    raise ValueError
                return cls("cpu", os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GiB)
            gb, _, n = rest.partition("x")
            return cls(kind, float(gb), int(n or 1))
        except ValueError:
            raise DownsizeError(f"cannot read the device {spec!r}", hint="write cuda:GB or cuda:GBxN, e.g. cuda:80 or cuda:24x2") from None

    @property
    def bytes(self) -> float:
        return self.memory_gb * GiB

    def __str__(self) -> str:
        return f"{self.kind} {self.memory_gb:.4g} GiB" + (f" x {self.count}" if self.count > 1 else "")


@dataclass
class MemoryEstimate:
    stage: str
    kind: str
    device: Device
    parts: dict[str, float]  # bytes of the peak phase, by what holds them
    phases: dict[str, float] = field(default_factory=dict)  # peak bytes per phase, when the stage has several
    notes: list[str] = field(default_factory=list)
    suggestions: list[str] = field(default_factory=list)

    @property
    def peak(self) -> float:
        return max(self.phases.values()) if self.phases else sum(self.parts.values())

    @property
    def fits(self) -> bool:
        return self.peak <= self.device.bytes

    def line(self) -> str:
        """One line for `downsize plan`."""
        parts = ", ".join(f"{k} {v / GiB:.1f}" for k, v in self.parts.items() if v >= 0.05 * GiB)
        verdict = "fits" if self.fits else "does NOT fit"
        return f"peak {self.peak / GiB:.1f} GiB ({parts}) — {verdict} on {self.device}"


def _get(s, name, default):
    v = s.get(name, default) if isinstance(s, Mapping) else getattr(s, name, default)
    return default if v is None else v


def _lora(s):
    lora = _get(s, "lora", None)
    if lora is None:
        return None
    r = _get(lora, "r", 16)
    q = _get(lora, "quantize_base", "none") not in ("none", None)
    return r, q


def _train_parts(m: ModelShape, s, device: Device, fsdp: int = 1) -> dict[str, float]:
    """A trained student: weights, grads, optimizer, activations (full or LoRA/QLoRA)."""
    tokens = _get(s, "batch_size", 8) * _get(s, "seq_len", 256)
    act_dtype = BF16 if _get(s, "mixed_precision", "bf16") == "bf16" else FP32
    lora = _lora(s)
    if lora is None:
        trained, base = m.params, FP32 * m.params
    else:
        r, q = lora
        trained, base = m.lora_params(r), (NF4_BYTES * (m.params - m.embed_params) + BF16 * m.embed_params
                                            if q else FP32 * m.params)
    f32, low = m.act_elems()
    return {"weights": base / fsdp, "grads": GRAD_BYTES * trained / fsdp, "optimizer": ADAMW_BYTES * trained / fsdp,
            "activations": tokens * m.layers * (f32 * FP32 + low * act_dtype) + tokens * m.hidden * FP32 * 2}


def _kd_chunk(s, vocab: int) -> float:
    return KD_CHUNK_COPIES * min(_get(s, "chunk_size", DEFAULT_CHUNK), _get(s, "batch_size", 8) * _get(s, "seq_len", 256)) * vocab * FP32


def _teacher_forward(t: ModelShape, s, weight_bytes: float) -> dict[str, float]:
    """An inference-only teacher: its weights and one layer's transient activations for the batch."""
    tokens = _get(s, "batch_size", 8) * _get(s, "seq_len", 256)
    return {"teacher": weight_bytes * t.params,
            "teacher_activations": tokens * (4 * t.hidden + 2 * t.intermediate * t.experts_per_token) * BF16
                                   + tokens * t.hidden * FP32}


def _teacher_bytes(s) -> float:
    return FP32 if _get(s, "teacher_dtype", "bf16") == "fp32" else BF16


def est_train(name, m, t, s, device, models) -> MemoryEstimate:
    parts = _train_parts(m, s, device)
    parts["ce_logits"] = _kd_chunk(s, m.vocab) / 2  # chunked cross entropy: logits and their gradient
    return MemoryEstimate(name, "", device, {**parts, "runtime": RUNTIME_BYTES})


def est_distill(name, m, t, s, device, models) -> MemoryEstimate:
    t = t or m
    mode = _get(s, "teacher_mode", "online")
    parts = _train_parts(m, s, device)
    parts["kd_logits"] = _kd_chunk(s, max(m.vocab, t.vocab))
    est = MemoryEstimate(name, "", device, parts)
    if mode == "online":
        parts.update(_teacher_forward(t, s, _teacher_bytes(s)))
        est.notes.append(f"online teacher {t.params / 1e9:.2f}B params in {'fp32' if _teacher_bytes(s) == FP32 else 'bf16'}")
    elif mode == "offline":
        k = _get(s, "top_k", 64)
        parts["teacher_cache_batch"] = _get(s, "batch_size", 8) * _get(s, "seq_len", 256) * (k + 1) * 8
        cache = {**_teacher_forward(t, s, _teacher_bytes(s)), "kd_logits": _kd_chunk(s, t.vocab), "runtime": RUNTIME_BYTES}
        est.phases = {"write teacher cache": sum(cache.values()), "train": sum(parts.values()) + RUNTIME_BYTES}
        est.notes.append(f"the cache pass holds the teacher ({cache['teacher'] / GiB:.1f} GiB) without the student")
    else:  # "server": the teacher's logprobs come over HTTP
        est.notes.append("teacher on a server: no teacher weights here")
    parts["runtime"] = RUNTIME_BYTES
    return est


def est_prune(name, m, t, s, device, models) -> MemoryEstimate:
    """Pruning loads fp32 and builds the smaller copy beside it (measured ~6 B/param for 1.5B -> 0.77B)."""
    keep = _prune_keep(s)
    tokens = _get(s, "calib_samples", 32) * _get(s, "seq_len", 256)
    parts = {"weights": FP32 * m.params, "pruned_copy": FP32 * m.params * keep,
             "calibration": min(tokens, _get(s, "seq_len", 256)) * (4 * m.hidden + 2 * m.intermediate) * FP32
                            + m.layers * (m.hidden + m.intermediate + m.heads) * FP32 * 2,
             "runtime": RUNTIME_BYTES}
    return MemoryEstimate(name, "", device, parts, notes=[f"keeps ~{keep:.0%} of the parameters"])


def est_quantize(name, m, t, s, device, models) -> MemoryEstimate:
    quant = _get(s, "quant", "Q4_K_M")
    imatrix = _get(s, "imatrix", True) not in (False, "off") and quant not in ("F32", "F16", "BF16", "Q8_0")
    convert = {"largest_tensor": CONVERT_TENSOR_COPIES * m.largest_tensor * FP32, "runtime": RUNTIME_BYTES}
    est = MemoryEstimate(name, "", device, convert)
    if imatrix:
        seq = 256
        im = {"weights": FP32 * m.params, "activations": seq * (4 * m.hidden + 2 * m.intermediate) * FP32,
              "imatrix_stats": m.layers * (4 * m.hidden + m.intermediate) * FP32, "runtime": RUNTIME_BYTES}
        est.phases = {"importance matrix": sum(im.values()), "convert": sum(convert.values())}
        est.parts = im
        est.notes.append("the importance-matrix pass holds the float model; conversion streams one tensor at a time")
    return est


def est_export(name, m, t, s, device, models) -> MemoryEstimate:
    return MemoryEstimate(name, "", device, {"largest_tensor": CONVERT_TENSOR_COPIES * m.largest_tensor * FP32,
                                             "runtime": RUNTIME_BYTES},
                          notes=["streams tensors (an existing GGUF is only linked)"])


def est_merge(name, m, t, s, device, models) -> MemoryEstimate:
    return MemoryEstimate(name, "", device, {"weights": FP32 * m.params, "runtime": RUNTIME_BYTES})


def est_eval(name, m, t, s, device, models) -> MemoryEstimate:
    """Every compared model is loaded at once (HF in fp32; GGUF files at their bits/weight in llama.cpp)."""
    seq = _get(s, "seq_len", 256)
    parts: dict[str, float] = {}
    for label, (shape, fmt) in (models or {"model": (m, "hf")}).items():
        w = FP32 * shape.params if fmt == "hf" else GGUF_BITS.get(fmt, 8) / 8 * shape.params
        parts[f"{label} weights"] = w
        parts[f"{label} logits"] = EVAL_LOGIT_COPIES * seq * shape.vocab * FP32
    parts["runtime"] = RUNTIME_BYTES
    return MemoryEstimate(name, "", device, parts, notes=["all compared models are resident together"])


def est_generate(name, m, t, s, device, models) -> MemoryEstimate:
    teacher = _get(s, "teacher", None)
    if isinstance(teacher, str) and teacher.startswith("openai:"):
        return MemoryEstimate(name, "", device, {"runtime": 0.1 * GiB}, notes=["the teacher is a server"])
    t = t or m
    kv = _get(s, "concurrency", 4) * (_get(s, "max_new_tokens", 256) + 1024) * t.layers * 2 * t.kv_dim * BF16
    return MemoryEstimate(name, "", device, {"teacher": FP32 * t.params, "kv_cache": kv, "runtime": RUNTIME_BYTES})


ESTIMATORS: dict[str, Callable[..., MemoryEstimate]] = {
    "train": est_train, "sft": est_train, "lora": est_train, "distill": est_distill, "prune": est_prune,
    "quantize": est_quantize, "export": est_export, "merge": est_merge, "eval": est_eval, "generate": est_generate,
}


def _prune_keep(s) -> float:
    targets = _get(s, "targets", {}) or {}
    frac = targets.get("params") if isinstance(targets, Mapping) else None
    if isinstance(frac, (int, float)) and 0 < frac <= 1:
        return float(frac)
    sparsity = _get(s, "sparsity", None)
    return 1.0 if sparsity else 0.5


def estimate_stage_memory(kind: str, settings, model: ModelShape | Mapping, teacher: ModelShape | Mapping | None = None,
                          device: Device | str = "cpu", name: str | None = None,
                          models: dict[str, tuple[ModelShape, str]] | None = None, suggest: bool = True) -> MemoryEstimate:
    """Peak memory of one stage of ``kind`` with ``settings`` (a stage settings object or a dict) on ``device``.
    ``model`` is the model the stage works on (the student for distill/sft), ``teacher`` the teacher's shape;
    ``models`` the (shape, "hf" or a GGUF quant type) of each model an eval stage compares."""
    if kind not in ESTIMATORS:
        raise DownsizeError(f"no memory estimate for stage kind {kind!r}", hint=f"known kinds: {', '.join(sorted(ESTIMATORS))}")
    m = model if isinstance(model, ModelShape) else ModelShape.from_config(model)
    t = teacher if isinstance(teacher, ModelShape) or teacher is None else ModelShape.from_config(teacher)
    device = Device.parse(device) if isinstance(device, str) else device
    est = ESTIMATORS[kind](name or kind, m, t, settings or {}, device, models)
    est.kind = kind
    if suggest and not est.fits:
        est.suggestions = _suggest(kind, settings or {}, m, t, device, models)
    return est


def _with(settings, **changes) -> dict:
    base = dict(settings) if isinstance(settings, Mapping) else (settings.model_dump() if hasattr(settings, "model_dump")
                                                                  else dict(vars(settings)))
    return {**base, **changes}


def _suggest(kind, s, m, t, device, models) -> list[str]:
    """Changes that make the stage fit, each with its new peak (best first)."""
    tries: list[tuple[str, Callable[[], MemoryEstimate]]] = []
    est = lambda k, s2: estimate_stage_memory(k, s2, m, t, device, models=models, suggest=False)  # noqa: E731
    if kind == "distill":
        mode = _get(s, "teacher_mode", "online")
        if mode == "online":
            tries.append(("teacher_mode: offline (cache the teacher's top-k first, train without it)",
                          lambda: est(kind, _with(s, teacher_mode="offline"))))
            tries.append(("teacher on a server (vLLM/llama.cpp serving logprobs; no teacher weights here)",
                          lambda: est(kind, _with(s, teacher_mode="server"))))
    if kind in ("distill", "sft", "train", "lora"):
        if _lora(s) is None:
            tries.append(("lora: {r: 16} (train adapters, base frozen)", lambda: est(kind, _with(s, lora={"r": 16}))))
        if device.kind == "cuda" and (_lora(s) or (16, False))[1] is False:
            tries.append(("lora: {r: 16, quantize_base: nf4} (QLoRA: 4-bit base)",
                          lambda: est(kind, _with(s, lora={"r": 16, "quantize_base": "nf4"}))))
        if device.kind == "cuda" and device.count > 1:
            n = device.count

            def fsdp():
                e = est(kind, s)
                for k in ("weights", "grads", "optimizer", "teacher"):
                    if k in e.parts:
                        e.parts[k] /= n
                if e.phases:
                    e.phases = {p: v / n if p != "train" else sum(e.parts.values()) for p, v in e.phases.items()}
                return e
            tries.append((f"FSDP across the {n} GPUs (accelerate launch --num_processes {n} --use_fsdp)", fsdp))
        tries.append(("batch_size: 1 (activations scale with batch_size x seq_len; raise grad_accum to keep the batch)",
                      lambda: est(kind, _with(s, batch_size=1))))
    if kind == "eval":
        tries.append(("compare against the teacher as a GGUF or a server, or list fewer `models`",
                      lambda: est(kind, s) if not models else estimate_stage_memory(
                          kind, s, m, t, device, models={k: (sh, "Q4_K_M" if k == "teacher" else f)
                                                         for k, (sh, f) in models.items()}, suggest=False)))
    out = []
    for label, fn in tries:
        e = fn()
        out.append((not e.fits, e.peak, f"{label} -> {e.peak / GiB:.1f} GiB, {'fits' if e.fits else 'still too big'}"))
    out.sort()
    lines = [x[2] for x in out]
    if not any(not x[0] for x in out):
        lines.append(f"needs {math.ceil(estimate_stage_memory(kind, s, m, t, device, models=models, suggest=False).peak / GiB)}"
                     f" GiB on one device as configured")
    return lines


# ---- recipes -----------------------------------------------------------------------------------

def plan_memory(recipe, device: Device | str = "cpu", config_of: Callable[[str], dict] | None = None) -> list[MemoryEstimate]:
    """One estimate per stage of a recipe, from model configs only (``config_of`` defaults to
    ``downsize.models.refs.model_config``: Hub ids read config.json from the cache or download it alone)."""
    from downsize.models.refs import model_config

    config_of = config_of or model_config
    device = Device.parse(device) if isinstance(device, str) else device
    shapes: dict[str, ModelShape] = {}

    def shape_of(ref: str) -> ModelShape:
        if ref not in shapes:
            shapes[ref] = ModelShape.from_config(config_of(ref))
        return shapes[ref]

    teacher = shape_of(recipe.teacher)
    by_stage: dict[str, tuple[ModelShape, str]] = {"teacher": (teacher, "hf")}
    current: tuple[ModelShape, str] = (teacher, "hf")
    out = []
    for st in recipe.stages:
        s = st.settings
        inp = by_stage.get(s.input) if getattr(s, "input", None) else None
        model = inp or current
        t_ref = getattr(s, "teacher", None)
        t_shape = shape_of(t_ref) if isinstance(t_ref, str) and not t_ref.startswith("openai:") else teacher
        student = getattr(s, "student", None)
        if isinstance(student, str):
            model = by_stage[student] if student in by_stage else (shape_of(student), "hf")
        elif isinstance(student, Mapping):
            model = (replace(teacher, **_student_fields(student)), "hf")
        models = None
        if st.kind == "eval":
            names = s.models or [n for n in by_stage]
            models = {n: by_stage[n] for n in names if n in by_stage}
        est = estimate_stage_memory(st.kind, s, model[0], t_shape, device, name=st.name, models=models)
        out.append(est)
        if st.kind in ("eval", "generate") or (st.kind == "export" and not _get(s, "quant", None) and
                                                any(f != "hf" for _, f in by_stage.values())):
            continue  # no new model: data, metrics, or the export re-uses the latest GGUF (the eval stage dedupes it)
        result = model
        if st.kind == "prune":
            result = (_pruned(model[0], s), "hf")
        elif st.kind in ("quantize", "export"):
            result = (model[0], _get(s, "quant", None) or "Q4_K_M")
        by_stage[st.name] = result
        current = result if st.kind not in ("quantize", "export") else current
    return out


_FIELD_MAP = {"hidden_size": "hidden", "num_hidden_layers": "layers", "num_attention_heads": "heads",
              "num_key_value_heads": "kv_heads", "intermediate_size": "intermediate", "head_dim": "head_dim"}


def _student_fields(overrides: Mapping) -> dict:
    return {_FIELD_MAP[k]: int(v) for k, v in overrides.items() if k in _FIELD_MAP}


def _pruned(m: ModelShape, s) -> ModelShape:
    targets = dict(_get(s, "targets", {}) or {})
    explicit = {k: int(targets[k]) for k in ("ffn", "hidden", "heads", "layers") if isinstance(targets.get(k), int)}
    if explicit:
        return replace(m, intermediate=explicit.get("ffn", m.intermediate), hidden=explicit.get("hidden", m.hidden),
                       heads=explicit.get("heads", m.heads), layers=explicit.get("layers", m.layers))
    f = math.sqrt(_prune_keep(s))  # width pruning to a parameter share shrinks hidden and ffn together
    return replace(m, hidden=int(m.hidden * f), intermediate=int(m.intermediate * f),
                   head_dim=m.head_dim)
