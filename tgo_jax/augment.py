"""On-device augmentation (jax, inside the jitted train step): images and event frames.

Image batches are ``[B, H, W, C]``; event-frame batches are time-major ``[T, B, H, W, 2]`` and get one draw
per recording, shared by its T frames, so that the motion in a recording is kept.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from tgo_jax import validation


def augment(key: jax.Array, images: jax.Array, *, crop_padding: int = 4, flip: bool = True) -> jax.Array:
    """Standard CIFAR augmentation: random crop after zero padding, then random horizontal flip.

    Per example b, with offsets ``(dy, dx) ~ U{0..2p}²`` and ``f ~ Bernoulli(½)`` drawn from ``key``:
    ``crop[b, i, j] = pad_p(x)[b, i + dy, j + dx]`` and ``out[b, i, j] = crop[b, i, W-1-j]`` if f else
    ``crop[b, i, j]``. Padding is with 0 (black, in pixel space: the models normalise inside). Shapes,
    dtype and the [0, 1] range are kept. Pure and jittable (``crop_padding`` and ``flip`` are static).

    Args:
      key: PRNG key.
      images: [B, H, W, C] float pixels.
      crop_padding: p, pixels of zero padding on each side before the crop; 0 turns cropping off.
      flip: whether to flip each image left-right with probability ½.
    """
    if images.ndim != 4:
        raise ValueError(f"images must be [B, H, W, C] (rank 4), got shape {images.shape}")
    validation.count("crop_padding", crop_padding, 0)
    crop_key, flip_key = jax.random.split(key)
    if crop_padding:
        images = random_crop(crop_key, images, crop_padding)
    if flip:
        images = random_flip(flip_key, images)
    return images


def random_crop(key: jax.Array, images: jax.Array, padding: int) -> jax.Array:
    """Zero-pads H and W by ``padding`` and crops each image back to [H, W] at a uniform random offset."""
    b, h, w, c = images.shape
    padded = jnp.pad(images, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    offsets = jax.random.randint(key, (b, 2), 0, 2 * padding + 1)  # [B, (dy, dx)]

    def crop_one(image, offset):
        return lax.dynamic_slice(image, (offset[0], offset[1], 0), (h, w, c))

    return jax.vmap(crop_one)(padded, offsets)


def random_flip(key: jax.Array, images: jax.Array) -> jax.Array:
    """Flips each image left-right (along W) with probability ½."""
    flip = jax.random.bernoulli(key, 0.5, (images.shape[0],))
    return jnp.where(flip[:, None, None, None], images[:, :, ::-1, :], images)
