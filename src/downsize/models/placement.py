"""One placement policy for every model downsize runs: which device (or device map) and which dtype.

    >>> import torch
    >>> from downsize.models.placement import Placement, device_of, load_placed, to_model
    >>> p = Placement(device="auto", dtype="bf16")        # CUDA when there is one, else the CPU
    >>> p.resolve() == ("cuda:0" if torch.cuda.is_available() else "cpu")
    True
    >>> teacher, tok = load_placed("zoo:coder-teacher", p)  # loaded straight in bf16 there, never fp32 first
    >>> teacher.dtype
    torch.bfloat16
    >>> ids = to_model(torch.tensor([tok.encode("def f():")]), teacher)  # inputs go where the model's embedding lives
    >>> ids.device == device_of(teacher)
    True
    >>> Placement(device="tpu")
    Traceback (most recent call last):
    downsize.errors.DownsizeError: unknown device 'tpu'
      hint: choose one of auto, cpu, cuda, other-gpu, shard, offload or cuda:N

Devices (``Placement.device``):

- ``auto``: ``cuda:0`` when CUDA is available, else ``cpu`` (what the training loop's accelerator
  picks for the student, so teacher and student share the GPU by default);
- ``cpu``, ``cuda``, ``cuda:N``: that device;
- ``other-gpu``: the last GPU when there are several (the student trains on ``cuda:0``), else as ``auto``;
- ``shard``: ``device_map="auto"`` — layers spread over every GPU (accelerate's big-model inference);
- ``offload``: ``device_map="auto"`` with the layers that do not fit on the GPUs kept in CPU memory.

A teacher served over HTTP (an OpenAI-compatible endpoint) is not placed at all: it is a backend of
``downsize.generate``, and the distill stage never loads it. On a machine without CUDA every
setting resolves to the CPU, and ``cpu``/``auto`` load exactly as ``load_model`` always did.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from downsize.errors import DownsizeError

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
DEVICES = ("auto", "cpu", "cuda", "other-gpu", "shard", "offload")  # and cuda:N
SHARDED = ("shard", "offload")


def _valid_device(device: str) -> bool:
    if device in DEVICES:
        return True
    kind, _, idx = device.partition(":")
    return kind == "cuda" and idx.isdigit()


@dataclass(frozen=True)
class Placement:
    """Where a model runs and in which dtype its weights are loaded (and kept)."""

    device: str = "auto"
    dtype: str = "fp32"

    def __post_init__(self):
        if not _valid_device(self.device):
            raise DownsizeError(f"unknown device {self.device!r}",
                                hint=f"choose one of {', '.join(DEVICES)} or cuda:N")
        if self.dtype not in DTYPES:
            raise DownsizeError(f"unknown dtype {self.dtype!r}", hint=f"choose one of {', '.join(DTYPES)}")

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    def resolve(self) -> str:
        """The concrete device (``cpu``, ``cuda:N``) or, for sharding, ``shard``/``offload``."""
        if not torch.cuda.is_available():
            if self.device.startswith("cuda"):
                raise DownsizeError(f"device {self.device!r} asks for CUDA, but this machine has no CUDA GPU",
                                    hint="use --device auto (the CPU here) or run on a machine with a GPU")
            return "cpu"
        n = torch.cuda.device_count()
        if self.device == "auto" or self.device == "cuda":
            return "cuda:0"
        if self.device == "other-gpu":
            return f"cuda:{n - 1}"
        if self.device.startswith("cuda:") and int(self.device.split(":")[1]) >= n:
            raise DownsizeError(f"device {self.device} does not exist: this machine has {n} GPU(s)",
                                hint=f"use cuda:0..cuda:{n - 1}, or shard to spread one model over them")
        return self.device

    def load_kwargs(self) -> dict:
        """Keyword arguments for ``from_pretrained``: the dtype, and a device map off the CPU."""
        where = self.resolve()
        kw: dict = {"dtype": self.torch_dtype}
        if where in SHARDED:
            kw["device_map"] = "auto"
            if where == "shard":  # no CPU spill: a model that does not fit the GPUs fails loudly instead
                kw["max_memory"] = {i: torch.cuda.mem_get_info(i)[0] for i in range(torch.cuda.device_count())}
        elif where != "cpu":
            kw["device_map"] = {"": where}
        return kw


def load_placed(ref, placement: Placement, with_tokenizer: bool = True, trust_remote_code: bool = False):
    """``load_model`` through the policy: weights loaded in ``placement.dtype`` directly onto its device(s)."""
    from downsize.models.refs import load_model

    kw = placement.load_kwargs()
    return load_model(ref, dtype=kw.pop("dtype"), trust_remote_code=trust_remote_code, with_tokenizer=with_tokenizer,
                      **kw)


def place(model: torch.nn.Module, placement: Placement) -> torch.nn.Module:
    """Move an already loaded model to the policy's device and dtype (no-op when it is there)."""
    where = placement.resolve()
    if where in SHARDED:
        raise DownsizeError("a model already in memory cannot be sharded by the placement policy",
                            hint="pass a model reference so it is loaded with device_map='auto'")
    if model.dtype != placement.torch_dtype:
        model = model.to(placement.torch_dtype)
    if device_of(model) != torch.device(where):
        model = model.to(where)
    return model


def device_of(model: torch.nn.Module) -> torch.device:
    """The device the model's inputs go to: its input embedding's (the first shard under a device map)."""
    while hasattr(model, "module") and isinstance(model.module, torch.nn.Module):  # DDP / accelerate wrappers
        model = model.module
    emb = model.get_input_embeddings()
    return emb.weight.device if emb is not None else next(model.parameters()).device


def to_model(t: torch.Tensor, model: torch.nn.Module) -> torch.Tensor:
    """``t`` on the device of ``model``'s inputs (no copy when it is already there)."""
    return t.to(device_of(model))
