"""Backend-aware 2-D 'SAME' convolution: the fastest of three equal formulations per layer on CPU.

Three implementations give the same values and gradients:

* ``"xla"``: ``lax.conv_general_dilated`` with JAX's own autodiff (what ``nn.Conv`` does).
* ``"im2col"``: one matrix product over shifted windows::

      y[n, p, q, o] = Σ_{i, j, c} x_pad[n, s·p + i, s·q + j, c] · K[i, j, c, o]
                    = (cols @ K.reshape(kh·kw·C_in, C_out))[n, p, q, o],
      cols[n, p, q, (i·kw + j)·C_in + c] = x_pad[n, s·p + i, s·q + j, c]

  with ``x_pad`` the input zero-padded as XLA pads 'SAME' (``lax.padtype_to_pads``) and ``s`` the
  stride: ``kh·kw`` strided slices, a concatenation and a matmul; its backward is two matmuls and
  the pads that undo the slices.
* ``"xla_flip"``: ``"xla"`` forward; the input gradient is a forward convolution of the output
  gradient with the flipped, transposed kernel, materialised (``conv_xla_flip``).

Measured on CPU (XLA:CPU, jax 0.10.2, 2 cores; ``bench/torch_small.py`` times whole models):
XLA's forward convolution runs near matmul speed for wide layers, but its own input gradient
keeps the kernel in an ``01oi`` layout that XLA:CPU runs up to 10× slower when the convolution sits
in a loop (``fori_loop``/``scan``: every PGD step); ``"xla_flip"`` avoids that. im2col is 2-4×
faster forward + backward when a window holds few inputs (``kh·kw·C_in <= 27``, e.g. a 3×3 conv
on an RGB or grey image) and for 1×1 convolutions (a plain matmul), and up to 2× slower for wide
3×3 layers (building ``cols`` costs more than the matmul saves). So ``impl="auto"`` is, on CPU,
im2col for 1×1 and narrow layers and ``"xla_flip"`` for the rest, and plain ``"xla"`` on every
other backend (GPU/TPU vendor kernels); it is decided at trace time from
``jax.default_backend()`` and the kernel shape.

``Conv`` is a drop-in for ``flax.linen.Conv`` with 'SAME' padding: same parameter names,
shapes (``kernel`` [kh, kw, C_in, C_out], ``bias`` [C_out]), initialisers and dtype promotion,
and — being named ``Conv`` — the same auto-generated module names (``Conv_0``, ...), so
checkpoints move between the two unchanged.
"""
from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.linen.dtypes import promote_dtype
from jax import lax

from tgo_jax import validation

Array = jax.Array

IMPLS = ("auto", "xla", "im2col", "xla_flip")
# "auto" on CPU: im2col when a window holds at most this many inputs (kh·kw·C_in), or for 1×1 kernels.
IM2COL_MAX_WINDOW = 27
_DIMENSION_NUMBERS = ("NHWC", "HWIO", "NHWC")


def resolve_impl(impl: str, kernel_shape: Sequence[int]) -> str:
    """Maps ``impl`` to "xla", "im2col" or "xla_flip" for a kernel [kh, kw, C_in, C_out].

    "auto" is "xla" off CPU. On CPU it is "im2col" for 1×1 kernels and narrow windows
    (``kh·kw·C_in <= IM2COL_MAX_WINDOW``), else "xla_flip".
    """
    validation.choice("impl", impl, IMPLS)
    if impl != "auto":
        return impl
    if jax.default_backend() != "cpu":
        return "xla"
    kh, kw, c_in, _ = kernel_shape
    return "im2col" if kh * kw == 1 or kh * kw * c_in <= IM2COL_MAX_WINDOW else "xla_flip"


def _check_operands(x: Array, kernel: Array, stride: int) -> None:
    """x [N, H, W, C], kernel [kh, kw, C, C_out], an int stride >= 1 (shapes are static: runs under jit)."""
    if x.ndim != 4:
        raise ValueError(f"x must be [N, H, W, C] (rank 4), got shape {x.shape}")
    if kernel.ndim != 4 or kernel.shape[2] != x.shape[-1]:
        raise ValueError(f"kernel must be [kh, kw, {x.shape[-1]}, C_out] for x of shape {x.shape}, "
                         f"got {kernel.shape}")
    validation.count("stride", stride)


def conv_xla(x: Array, kernel: Array, *, stride: int = 1, precision: Any = None) -> Array:
    """'SAME' convolution through ``lax.conv_general_dilated`` (what ``nn.Conv`` computes).

    Args:
      x: input [N, H, W, C_in].
      kernel: [kh, kw, C_in, C_out].
      stride: the same stride on both spatial axes.
      precision: passed to XLA (``lax.Precision``), None for the default.

    Returns:
      [N, ⌈H/s⌉, ⌈W/s⌉, C_out].
    """
    _check_operands(x, kernel, stride)
    return lax.conv_general_dilated(x, kernel, (stride, stride), "SAME",
                                    dimension_numbers=_DIMENSION_NUMBERS, precision=precision)


def conv_im2col(x: Array, kernel: Array, *, stride: int = 1, precision: Any = None) -> Array:
    """'SAME' convolution as im2col + one matmul (module docstring formula); equals ``conv_xla``.

    Args:
      x: input [N, H, W, C_in].
      kernel: [kh, kw, C_in, C_out].
      stride: the same stride on both spatial axes.
      precision: passed to the matmul (``lax.Precision``), None for the default.

    Returns:
      [N, ⌈H/s⌉, ⌈W/s⌉, C_out].
    """
    _check_operands(x, kernel, stride)
    n, h, w, c_in = x.shape
    kh, kw, _, c_out = kernel.shape
    pads = lax.padtype_to_pads((h, w), (kh, kw), (stride, stride), "SAME")
    x_pad = jnp.pad(x, ((0, 0), *pads, (0, 0)))
    ho, wo = -(-h // stride), -(-w // stride)
    windows = [lax.slice(x_pad, (0, i, j, 0), (n, i + (ho - 1) * stride + 1, j + (wo - 1) * stride + 1, c_in),
                         (1, stride, stride, 1))
               for i in range(kh) for j in range(kw)]
    # Channel order (i, j, c) matches the row-major flattening of kernel[i, j, c, :].
    cols = windows[0] if len(windows) == 1 else jnp.concatenate(windows, axis=-1)
    y = jnp.matmul(cols.reshape(n * ho * wo, kh * kw * c_in), kernel.reshape(kh * kw * c_in, c_out),
                   precision=precision)
    return y.reshape(n, ho, wo, c_out)


def input_grad_pads(size: int, kernel: int, stride: int, pad_lo: int) -> tuple[int, int]:
    """Padding of the stride-dilated output gradient for the input gradient of a 'SAME' conv.

    Forward ``y[p] = Σ_i x[s·p + i - lo]·K[i]`` gives ``dx[q] = Σ_j dy_d[q + j - (k-1-lo)]·K[k-1-j]``
    with ``dy_d`` the output gradient dilated by ``s``: a 'VALID' conv of ``dy_d`` padded by
    ``(k-1-lo, n + lo - (m-1)·s - 1)`` with the flipped kernel, ``m = ⌈n/s⌉``, back to length n.
    """
    out = -(-size // stride)
    return kernel - 1 - pad_lo, size + pad_lo - (out - 1) * stride - 1


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv_xla_flip(x, kernel, stride, precision):
    return conv_xla(x, kernel, stride=stride, precision=precision)


def _conv_xla_flip_fwd(x, kernel, stride, precision):
    return conv_xla(x, kernel, stride=stride, precision=precision), (x, kernel)


def _conv_xla_flip_bwd(stride, precision, residuals, dy):
    x, kernel = residuals
    (kh, kw), (h, w) = kernel.shape[:2], x.shape[1:3]
    (lo_h, _), (lo_w, _) = lax.padtype_to_pads((h, w), (kh, kw), (stride, stride), "SAME")
    # The barrier keeps XLA from folding flip + transpose into the convolution's dimension labels.
    flipped = lax.optimization_barrier(jnp.flip(kernel, (0, 1)).swapaxes(2, 3))  # [kh, kw, C_out, C_in]
    dx = lax.conv_general_dilated(dy, flipped, (1, 1), [input_grad_pads(h, kh, stride, lo_h),
                                                        input_grad_pads(w, kw, stride, lo_w)],
                                  lhs_dilation=(stride, stride), dimension_numbers=_DIMENSION_NUMBERS,
                                  precision=precision)
    _, kernel_vjp = jax.vjp(lambda k: conv_xla(x, k, stride=stride, precision=precision), kernel)
    return dx.astype(x.dtype), kernel_vjp(dy)[0]


_conv_xla_flip.defvjp(_conv_xla_flip_fwd, _conv_xla_flip_bwd)


def conv_xla_flip(x: Array, kernel: Array, *, stride: int = 1, precision: Any = None) -> Array:
    """``conv_xla`` whose input gradient is a forward convolution with the flipped kernel.

    XLA's own transpose of a convolution keeps the kernel in place and swaps its in/out labels
    (``01oi``); XLA:CPU has no fast kernel for that layout and, inside loops (``fori_loop``,
    ``scan``: PGD), does not copy the kernel to one, which made the input gradient up to 10× slower.
    Here ``dx = conv(dilate_s(dy), flip(K)ᵀ)`` (``input_grad_pads``) with the flipped, transposed
    kernel materialised in HWIO; the kernel gradient is XLA's. Same values as ``conv_xla``.
    Reverse-mode only (``jax.custom_vjp``), like the spike functions.
    """
    _check_operands(x, kernel, stride)
    return _conv_xla_flip(x, kernel, stride, precision)


IMPL_FNS = {"xla": conv_xla, "im2col": conv_im2col, "xla_flip": conv_xla_flip}


def conv2d(x: Array, kernel: Array, *, stride: int = 1, impl: str = "auto", precision: Any = None) -> Array:
    """'SAME' convolution with the implementation chosen by ``impl`` (``IMPLS``, see ``resolve_impl``)."""
    return IMPL_FNS[resolve_impl(impl, kernel.shape)](x, kernel, stride=stride, precision=precision)


def _pair(value: int | Sequence[int], name: str) -> tuple[int, int]:
    """(v, v) for an int, the pair itself for a pair; each an int >= 1."""
    pair = (value, value) if isinstance(value, int) else tuple(value) if isinstance(value, Sequence) else ()
    if len(pair) != 2:
        raise ValueError(f"{name} must be an int >= 1 or a pair of them, got {value!r}")
    return tuple(validation.count(f"{name}[{i}]", v) for i, v in enumerate(pair))


class Conv(nn.Module):
    """'SAME'-padded 2-D convolution, a drop-in for ``nn.Conv(features, kernel_size, strides,
    padding="SAME", use_bias, dtype)`` with a choice of implementation.

    ``y = conv2d(x, kernel, stride) + bias`` (module docstring). Inputs are [..., H, W, C_in];
    leading axes are flattened into one batch axis as ``nn.Conv`` does.

    Attributes:
      features: C_out.
      kernel_size: k or (kh, kw).
      strides: s or (s, s); both spatial strides must be equal.
      use_bias: add a learned bias [C_out].
      dtype: computation dtype (None: inferred from inputs and params, as in ``nn.Conv``).
      param_dtype: parameter dtype (float32).
      precision: matmul / convolution precision.
      kernel_init, bias_init: initialisers (``nn.Conv``'s defaults).
      impl: one of ``IMPLS``: "auto" (``resolve_impl``), "xla", "im2col" or "xla_flip".
    """

    features: int
    kernel_size: int | Sequence[int] = 3
    strides: int | Sequence[int] = 1
    use_bias: bool = True
    dtype: Any = None
    param_dtype: Any = jnp.float32
    precision: Any = None
    kernel_init: Any = nn.initializers.lecun_normal()
    bias_init: Any = nn.initializers.zeros_init()
    impl: str = "auto"

    @nn.compact
    def __call__(self, x: Array) -> Array:
        kh, kw = _pair(self.kernel_size, "kernel_size")
        sh, sw = _pair(self.strides, "strides")
        if sh != sw:
            raise ValueError(f"strides must be equal on both axes, got {self.strides!r}")
        if x.ndim < 4:
            raise ValueError(f"input must be [..., H, W, C] with a batch axis (rank >= 4), got shape {x.shape}")
        batch_shape = x.shape[:-3]
        x = x.reshape((-1,) + x.shape[-3:])
        kernel = self.param("kernel", self.kernel_init, (kh, kw, x.shape[-1], self.features), self.param_dtype)
        bias = self.param("bias", self.bias_init, (self.features,), self.param_dtype) if self.use_bias else None
        x, kernel, bias = promote_dtype(x, kernel, bias, dtype=self.dtype)
        y = conv2d(x, kernel, stride=sh, impl=self.impl, precision=self.precision)
        if bias is not None:
            y = y + bias
        return y.reshape(batch_shape + y.shape[1:])
