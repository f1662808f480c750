"""Gaussian noise for Noisy-LIF layers, exact and cheap (docs/FORMULAS.md §1, paper eq. 15).

A layer's noise ξ[t] ~ N(0, σ²) for time step t is a pure function of (layer key, t, element index):

1. Bits: the Philox-4x32-10 counter-based generator (Salmon, Moraes, Dror and Shaw, *Parallel random
   numbers: as easy as 1, 2, 3*, SC 2011), with the 64-bit key drawn once per layer from the caller's JAX
   PRNG key and one counter (element index, t, 0, 0) per element; its first output word feeds a float32
   normal (the first two a float64 one). Each round's two 32×32-bit products are native 64-bit products
   (``_mul_wide``). One block per element keeps the draw elementwise: spreading a block's four words over
   four elements needs a concatenation, and XLA:CPU then recomputes the whole block for every word.
2. Normal: the top 23 bits k give the uniform ``u = (2k + 1)·2⁻²³ − 1``, symmetric in (−1, 1) and exact
   in float32 (computed in integers, ``_symmetric_uniform``), and ``z = √2·erfinv(u)`` is the inverse normal
   CDF of (u + 1)/2 (float64: 52 bits, 2⁻⁵²). This is how ``jax.random.normal`` maps bits to normals; only
   the bit source differs.

Because step t's draw depends only on the key and t, the fused layer's backward recomputes exactly the
forward's ξ from one stored key, and the plain path and a loop of single steps get the same values
(``lif.draw_noise_tb`` draws all T steps of a layer in one rolled loop before its time loop).
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

Array = jax.Array

# Philox-4x32 constants (Random123): round multipliers and the Weyl key increments.
_M0, _M1 = np.uint32(0xD2511F53), np.uint32(0xCD9E8D57)
_W0, _W1 = np.uint32(0x9E3779B9), np.uint32(0xBB67AE85)
ROUNDS = 10
_SQRT2 = math.sqrt(2.0)


def _mul_wide(a, b: Array) -> tuple[Array, Array]:
    """``(hi, lo)``: the high and low 32 bits of the 64-bit product of uint32 ``a`` and ``b``.

    One native 64-bit product (convert to uint64, multiply, shift, truncate; traced with 64-bit types
    allowed whatever ``jax_enable_x64`` says). These are plain elementwise HLO ops that XLA's SPMD
    partitioner lowers, unlike ``lax.mulhi`` (its ``chlo.mulhi`` fails to compile with a sharded batch),
    and on CPU the product of two zero-extended words is one vector instruction, where the high half
    from 16-bit halves took four 32-bit products and eight shifts, masks and adds.
    """
    with jax.enable_x64(True):
        wide = lax.convert_element_type(a, np.uint64) * lax.convert_element_type(b, np.uint64)
        return (lax.convert_element_type(wide >> np.uint64(32), np.uint32),
                lax.convert_element_type(wide, np.uint32))


def philox4x32(key: tuple[Array, Array], counter: tuple[Array, Array, Array, Array],
               rounds: int = ROUNDS) -> tuple[Array, Array, Array, Array]:
    """Philox-4x32-R: four uint32 words from a 2-word key and a 4-word counter (arrays broadcast).

    Each round: ``(hi0, lo0) = M0·c0``, ``(hi1, lo1) = M1·c2`` (32×32 → 64-bit products), then
    ``c = (hi1 ⊕ c1 ⊕ k0, lo1, hi0 ⊕ c3 ⊕ k1, lo0)`` and the key is bumped by the Weyl constants.
    """
    k0, k1 = key
    c0, c1, c2, c3 = counter
    for r in range(rounds):
        if r:
            k0, k1 = k0 + _W0, k1 + _W1
        hi0, lo0 = _mul_wide(_M0, c0)
        hi1, lo1 = _mul_wide(_M1, c2)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
    return c0, c1, c2, c3


def layer_key(key: Array) -> Array:
    """The 2-word Philox key (uint32 [2]) of a layer, drawn from a JAX PRNG key of any implementation."""
    return jax.random.bits(key, (2,), jnp.uint32)


def _block_words(philox_key: Array, t, shape, words: int) -> tuple[Array, ...]:
    """The first ``words`` output words of block (i, t, 0, 0) for each element i of ``shape``."""
    n = math.prod(shape)
    if n > np.iinfo(np.uint32).max:
        raise ValueError(f"a noise draw of {n} elements per time step exceeds Philox's 2^32 blocks")
    i = lax.iota(jnp.uint32, n).reshape(shape)
    t = jnp.broadcast_to(jnp.asarray(t, jnp.uint32), shape)
    zero = jnp.zeros(shape, jnp.uint32)
    return philox4x32((philox_key[0], philox_key[1]), (i, t, zero, zero))[:words]


def _symmetric_uniform(bits: Array, m: int, int_dtype, dtype) -> Array:
    """``u = (2k + 1)·2⁻ᵐ − 1`` from the top m bits k of unsigned ``bits`` (docs/FORMULAS.md §1, noise draw).

    Computed as the integer ``2k + 1 − 2ᵐ`` (the top m + 1 bits with the lowest set), converted exactly
    (|·| < 2ᵐ) and scaled by 2⁻ᵐ: no floating-point sum, which XLA may reassociate. (The former
    ``(2·one − 3) + 2⁻ᵐ`` became ``2·one + (−3 + 2⁻ᵐ)`` = ``2·one − 3`` under some fusions, so u = −1 and
    ξ = −∞ about once in 2ᵐ draws.)
    """
    shift = np.dtype(bits.dtype).itemsize * 8 - (m + 1)
    odd = (bits >> np.array(shift, bits.dtype)) | np.array(1, bits.dtype)
    centred = lax.convert_element_type(odd, int_dtype) - np.array(1 << m, int_dtype)
    return lax.convert_element_type(centred, dtype) * np.array(2.0 ** -m, dtype)


def standard_normal(philox_key: Array, t, shape, dtype=jnp.float32) -> Array:
    """z ~ N(0, 1) of ``shape`` for time step ``t`` (float64 when ``dtype`` is, float32 otherwise).

    Args:
      philox_key: uint32 [2] from ``layer_key``.
      t: the time step (a Python int or a traced integer scalar).
      shape: the step's shape [B, ...].
      dtype: the layer's dtype; below float64 the draw is float32 (exact at float32 resolution) and the
        caller rounds once to its dtype.
    """
    if jnp.dtype(dtype) == jnp.float64:
        hi, lo = (w.astype(jnp.uint64) for w in _block_words(philox_key, t, shape, 2))
        u = _symmetric_uniform((hi << np.uint64(32)) | lo, 52, jnp.int64, jnp.float64)
    else:
        (bits,) = _block_words(philox_key, t, shape, 1)
        u = _symmetric_uniform(bits, 23, jnp.int32, jnp.float32)
    return _SQRT2 * lax.erf_inv(u)


def gaussian(philox_key: Array, t, shape, dtype, std: float) -> Array:
    """ξ = σ·z ~ N(0, σ²) of ``shape`` for time step ``t``, rounded once to ``dtype``."""
    return (std * standard_normal(philox_key, t, shape, dtype)).astype(dtype)
