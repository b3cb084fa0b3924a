"""Inference-only speed-ups of a ViTPose model: reduced precision and oneDNN-prepacked linear layers.

    fast = optimize_for_inference(model, dtype="auto")     # a separate copy; `model` stays trainable as it was
    heatmaps = fast(pixel_values).heatmaps

About 80% of a ViTPose forward on CPU is the blocks' linear layers. `optimize_for_inference` hands them to oneDNN
with their weights reordered once into its blocked layout (instead of on every call) and the MLP's GELU fused into the
first product, does the same for the head's deconvolutions (eval BatchNorm folded in, ReLU fused), and casts the model
to `dtype` (bf16 runs at several times the fp32 rate on CPUs with native bf16).
At fp32 the results equal the plain forward up to summation order (about 1e-6 relative). Everything else (attention
through sdpa, LayerNorm, the heads) is the model's own code, so the transform needs no compile step and the returned
module has the same inputs and outputs. On GPUs it casts (and optionally compiles); there is no packing to do.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

DTYPE_NAMES = {
    "fp32": torch.float32, "float32": torch.float32,
    "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
    "fp16": torch.float16, "float16": torch.float16,
}


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 products in hardware (AVX512-BF16 or AMX), where bf16 pays off at all.

    Without them oneDNN emulates bf16 and is slower than fp32, so "auto" must not choose it.
    """
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:  # not Linux: no cheap way to tell, and fp32 is never the slow choice
        return False
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def resolve_dtype(dtype: str | torch.dtype | None, device: str | torch.device = "cpu") -> torch.dtype:
    """A torch dtype from a dtype or a name ("fp32", "bf16", "fp16", "float32", ...).

    "auto" is the fastest dtype the hardware computes natively: bf16 on GPUs that support it and on CPUs with native
    bf16, fp32 elsewhere. None means fp32.
    """
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    name = str(dtype).lower().removeprefix("torch.")
    if name == "auto":
        device = torch.device(device)
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else torch.float16
        if device.type == "cpu":
            return torch.bfloat16 if cpu_has_native_bf16() else torch.float32
        return torch.float32
    if name not in DTYPE_NAMES:
        raise ValueError(f"Unknown dtype {dtype!r}: use 'auto' or one of {sorted(DTYPE_NAMES)}.")
    return DTYPE_NAMES[name]


def onednn_linear_available(dtype: torch.dtype) -> bool:
    """Whether this torch build has oneDNN's prepacked linear for `dtype` on CPU."""
    if dtype not in (torch.float32, torch.bfloat16) or not torch.backends.mkldnn.is_available():
        return False
    ops = torch.ops.mkldnn
    return hasattr(ops, "_reorder_linear_weight") and hasattr(ops, "_linear_pointwise")


class PackedLinear(nn.Module):
    """An inference-only `nn.Linear` (optionally followed by GELU) whose weight oneDNN reordered once, at build time.

    The packed weight is a buffer of oneDNN's own layout: it cannot be trained or saved as a regular checkpoint,
    which is why it only ever lives in the copy `optimize_for_inference` returns.
    """

    def __init__(self, linear: nn.Linear, activation: str = "none"):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.activation = activation
        weight = linear.weight.detach()
        self.register_buffer("packed_weight", torch.ops.mkldnn._reorder_linear_weight(weight, None), persistent=False)
        bias = None if linear.bias is None else linear.bias.detach().clone()
        self.register_buffer("bias", bias, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(x, self.packed_weight, self.bias, self.activation, [], "none")

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, activation={self.activation}"


class PackedDeconvReLU(nn.Module):
    """An inference-only `relu(batchnorm(deconv(x)))` block: the eval BatchNorm folded into the deconvolution's weight
    and bias, the weight reordered once for oneDNN and the ReLU fused. Unpacked, oneDNN reorders this weight on every
    call, which dominates the head at small batches."""

    def __init__(self, deconv: nn.ConvTranspose2d, batchnorm: nn.BatchNorm2d | None = None):
        super().__init__()
        weight = deconv.weight.detach()
        bias = deconv.bias.detach() if deconv.bias is not None else weight.new_zeros(deconv.out_channels)
        if batchnorm is not None:
            scale = batchnorm.weight.detach() / torch.sqrt(batchnorm.running_var + batchnorm.eps)
            weight = weight * scale.reshape(1, -1, 1, 1).to(weight.dtype)  # (in, out, kh, kw): scale each output
            bias = (bias - batchnorm.running_mean) * scale + batchnorm.bias.detach()
        self.geometry = (
            list(deconv.padding), list(deconv.output_padding), list(deconv.stride), list(deconv.dilation), deconv.groups
        )
        packed = torch.ops.mkldnn._reorder_convolution_transpose_weight(weight, *self.geometry, None)
        self.register_buffer("packed_weight", packed, persistent=False)
        self.register_buffer("bias", bias.to(weight.dtype), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._convolution_transpose_pointwise(
            x, self.packed_weight, self.bias, *self.geometry, "relu", [], ""
        )


def pack_deconvolution_blocks(model: nn.Module) -> nn.Module:
    """Replace every `VitPoseDeconvBlock` of `model` (in place, eval only) by a `PackedDeconvReLU`.

    Matched by class name, not by class: a model loaded with the installed package may be optimized by a copy of this
    module shipped with a checkpoint (trust_remote_code), whose classes are other objects.
    """
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if type(child).__name__ == "VitPoseDeconvBlock" and child.deconv.groups == 1:
                setattr(module, name, PackedDeconvReLU(child.deconv, child.batchnorm))
    return model


def pack_linear_layers(model: nn.Module) -> nn.Module:
    """Replace every `nn.Linear` of `model` (in place) by a `PackedLinear`, fusing an exact GELU that follows it."""
    for module in list(model.modules()):
        act = getattr(module, "act", None)
        fuse_gelu = isinstance(getattr(module, "fc1", None), nn.Linear) and _is_exact_gelu(act)
        for name, child in list(module.named_children()):
            if isinstance(child, nn.Linear):
                fused = fuse_gelu and name == "fc1"
                setattr(module, name, PackedLinear(child, "gelu" if fused else "none"))
        if fuse_gelu:
            module.act = nn.Identity()
    return model


def _is_exact_gelu(module: nn.Module | None) -> bool:
    """The erf GELU (transformers' "gelu", torch's default), the only one oneDNN's "gelu" post-op equals."""
    if isinstance(module, nn.GELU):
        return module.approximate == "none"
    return type(module).__name__ == "GELUActivation" and not getattr(module, "use_gelu_python", False)


def optimize_for_inference(
    model: nn.Module, dtype: str | torch.dtype | None = None, compile: bool = False, pack: bool | None = None,
) -> nn.Module:
    """An inference-only copy of `model` in `dtype` (None: the model's own), with its fastest kernels.

    `pack` (default: where available, i.e. CPU fp32/bf16 with oneDNN, unless compiling) prepacks the linear layers;
    `compile` wraps the forward in `torch.compile` with freezing instead: faster still where the batch size is fixed
    (a video stream, a server with a fixed batch), since each new batch size compiles again; on GPUs it is the only
    speed-up besides `dtype`.
    The copy is in eval mode and must not be trained; `model` itself is left untouched.
    """
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype if dtype is None else resolve_dtype(dtype, device)
    fast = copy.deepcopy(model).eval().requires_grad_(False).to(dtype)
    if pack is None:  # inductor packs weights itself (with freezing) and cannot lower the prepacked op
        pack = device.type == "cpu" and onednn_linear_available(dtype) and not compile
    if pack:
        if device.type != "cpu" or not onednn_linear_available(dtype) or compile:
            raise ValueError(
                f"Prepacked oneDNN linear layers need an uncompiled CPU model in fp32 or bf16, got {device} {dtype}"
                f"{' with compile' if compile else ''}."
            )
        pack_linear_layers(fast)
        pack_deconvolution_blocks(fast)
    if compile:
        # Freezing turns the (now constant) weights into folded, prepacked constants: measured 1.03-1.10x the packed
        # eager path on CPU at fp32, exact to ~1e-6, but every new input shape compiles again (~20 s for ViTPose-B).
        fast.forward = _frozen_compile(fast.forward)
    return fast


def _frozen_compile(forward: Callable[..., Any]) -> Callable[..., Any]:
    """`torch.compile(forward)` with inductor's freezing on when it compiles (at a call with a new shape).

    The config is patched around each call rather than passed in `options`, which this torch ignores for freezing.
    """
    from torch._inductor import config as inductor_config

    compiled = torch.compile(forward)

    @functools.wraps(forward)
    def frozen_forward(*args, **kwargs):
        with inductor_config.patch(freezing=True):
            return compiled(*args, **kwargs)
    return frozen_forward


__all__ = ["PackedDeconvReLU", "PackedLinear", "pack_deconvolution_blocks", "cpu_has_native_bf16", "optimize_for_inference", "pack_linear_layers", "resolve_dtype"]
