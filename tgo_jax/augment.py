"""On-device augmentation (jax, inside the jitted train step): images and event frames.

Image batches are ``[B, H, W, C]``; event-frame batches are time-major ``[T, B, H, W, 2]`` and get one draw
per recording, shared by its T frames, so that the motion in a recording is kept.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from tgo_jax import validation


def augment(key: jax.Array, x: jax.Array, *, crop_padding: int = 4, flip: bool = True,
            roll: int = 0) -> jax.Array:
    """Random crop after zero padding, random horizontal flip, and (optionally) a random roll.

    Per example b, with offsets ``(dy, dx) ~ U{0..2p}²`` and ``f ~ Bernoulli(½)`` drawn from ``key``:
    ``crop[b, i, j] = pad_p(x)[b, i + dy, j + dx]`` and ``out[b, i, j] = crop[b, i, W-1-j]`` if f else
    ``crop[b, i, j]``. Padding is with 0 (black pixels, or no events: the models normalise inside). With
    ``roll = r > 0`` each example is then shifted cyclically by ``(sy, sx) ~ U{-r..r}²`` (what leaves one
    side comes back on the other), an augmentation used for event data (Li et al., "Neuromorphic data
    augmentation for training spiking neural networks", ECCV 2022; docs/FORMULAS.md §10). Event frames
    [B, T, H, W, C] get one draw per recording, shared by its T frames, so the motion within a recording is
    kept. Shapes, dtype and the [0, 1] range are kept. Pure and jittable (the options are static).

    Args:
      key: PRNG key.
      x: [B, H, W, C] float pixels, or [B, T, H, W, C] event frames.
      crop_padding: p, pixels of zero padding on each side before the crop; 0 turns cropping off.
      flip: whether to flip each example left-right with probability ½.
      roll: r, the largest cyclic shift in pixels along H and along W; 0 (the default) turns it off.
    """
    if x.ndim not in (4, 5):
        raise ValueError(f"x must be [B, H, W, C] images (rank 4) or [B, T, H, W, C] event frames (rank 5), "
                         f"got shape {x.shape}")
    validation.count("crop_padding", crop_padding, 0)
    validation.count("roll", roll, 0)
    crop_key, flip_key = jax.random.split(key)
    if crop_padding:
        x = random_crop(crop_key, x, crop_padding)
    if flip:
        x = random_flip(flip_key, x)
    if roll:
        x = random_roll(jax.random.fold_in(key, 2), x, roll)
    return x


def _spatial_pad(x: jax.Array, padding: int) -> jax.Array:
    """Zero-pads the H and W axes (the two before the last) of [B, ..., H, W, C]."""
    widths = [(0, 0)] * (x.ndim - 3) + [(padding, padding), (padding, padding), (0, 0)]
    return jnp.pad(x, widths)


def random_crop(key: jax.Array, x: jax.Array, padding: int) -> jax.Array:
    """Zero-pads H and W by ``padding`` and crops each example [..., H, W, C] back at a uniform random offset."""
    h, w = x.shape[-3], x.shape[-2]
    offsets = jax.random.randint(key, (x.shape[0], 2), 0, 2 * padding + 1)  # [B, (dy, dx)]

    def crop_one(example, offset):
        start = (0,) * (example.ndim - 3) + (offset[0], offset[1], 0)
        return lax.dynamic_slice(example, start, example.shape[:-3] + (h, w, example.shape[-1]))

    return jax.vmap(crop_one)(_spatial_pad(x, padding), offsets)


def random_flip(key: jax.Array, x: jax.Array) -> jax.Array:
    """Flips each example left-right (along W) with probability ½."""
    flip = jax.random.bernoulli(key, 0.5, (x.shape[0],)).reshape((-1,) + (1,) * (x.ndim - 1))
    return jnp.where(flip, jnp.flip(x, axis=-2), x)


def random_roll(key: jax.Array, x: jax.Array, max_shift: int) -> jax.Array:
    """Shifts each example cyclically along H and W by ``(sy, sx) ~ U{-r..r}²`` (r = ``max_shift``)."""
    shifts = jax.random.randint(key, (x.shape[0], 2), -max_shift, max_shift + 1)

    def roll_one(example, shift):
        return jnp.roll(example, (shift[0], shift[1]), axis=(-3, -2))

    return jax.vmap(roll_one)(x, shifts)
