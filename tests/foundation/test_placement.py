"""The placement policy on a machine without CUDA: everything resolves to the CPU, weights load straight in
the dtype they run in (bit-identical to loading fp32 and casting, as downsize did before), bad requests
are refused with a hint. The CUDA side is in tests/gpu/test_gpu.py."""

from __future__ import annotations

import pytest
import torch

from downsize.errors import DownsizeError
from downsize.models.placement import Placement, device_of, load_placed, place, to_model
from downsize.models.refs import load_model

needs_no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only resolution")


@needs_no_cuda
@pytest.mark.parametrize("device", ["auto", "cpu", "other-gpu", "shard", "offload"])
def test_everything_resolves_to_the_cpu_without_cuda(device):
    p = Placement(device, "bf16")
    assert p.resolve() == "cpu" and p.load_kwargs() == {"dtype": torch.bfloat16}  # no device map: the old CPU load


@needs_no_cuda
def test_cuda_requests_are_refused_with_a_hint():
    with pytest.raises(DownsizeError, match="no CUDA GPU") as e:
        Placement("cuda:1").resolve()
    assert "auto" in e.value.hint


def test_bad_device_or_dtype():
    with pytest.raises(DownsizeError, match="unknown device"):
        Placement("tpu")
    with pytest.raises(DownsizeError, match="unknown dtype"):
        Placement("cpu", "int8")


def test_loaded_straight_in_bf16_equals_fp32_then_cast(tiny_family_dir):
    """The teacher is no longer materialised in fp32 first: same weights, half the bytes."""
    direct, _ = load_placed(str(tiny_family_dir), Placement("cpu", "bf16"), with_tokenizer=False)
    old, _ = load_model(str(tiny_family_dir), with_tokenizer=False)
    old = old.to(torch.bfloat16)
    assert all(p.dtype == torch.bfloat16 for p in direct.parameters())
    sd_a, sd_b = direct.state_dict(), old.state_dict()
    assert sd_a.keys() == sd_b.keys() and all(torch.equal(sd_a[k], sd_b[k]) for k in sd_a)
    assert device_of(direct) == torch.device("cpu")
    ids = torch.tensor([[1, 2, 3]])
    assert to_model(ids, direct) is ids  # already there: no copy
    assert place(old, Placement("cpu", "bf16")) is old
