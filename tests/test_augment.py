"""Tests for tgo_jax.augment: image crop/flip and the event-frame augmentations."""
from __future__ import annotations

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tgo_jax import augment


def hand_made_batch(b, h=4, w=5, c=2):
    """b copies of one image with distinct pixel values in (0, 1], so every crop/flip is identifiable."""
    image = (np.arange(h * w * c, dtype=np.float32).reshape(h, w, c) + 1.0) / (h * w * c)
    return image, jnp.asarray(np.broadcast_to(image, (b, h, w, c)))


class AugmentTest(chex.TestCase):

    @chex.variants(with_jit=True, without_jit=True)
    def test_keeps_shape_dtype_range(self):
        x = jax.random.uniform(jax.random.PRNGKey(0), (8, 32, 32, 3))
        out = self.variant(augment.augment)(jax.random.PRNGKey(1), x)
        chex.assert_shape(out, x.shape)
        chex.assert_type(out, x.dtype)
        assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0

    @chex.variants(with_jit=True, without_jit=True)
    def test_crop_is_a_shift_of_the_zero_padded_image(self):
        p = 1
        image, x = hand_made_batch(256)
        out = np.asarray(self.variant(functools.partial(augment.augment, crop_padding=p, flip=False))(
            jax.random.PRNGKey(2), x))
        h, w, _ = image.shape
        padded = np.pad(image, ((p, p), (p, p), (0, 0)))
        candidates = {(dy, dx): padded[dy:dy + h, dx:dx + w]
                      for dy in range(2 * p + 1) for dx in range(2 * p + 1)}
        used = set()
        for crop in out:
            matches = [off for off, cand in candidates.items() if np.array_equal(crop, cand)]
            assert len(matches) == 1, "each output must be exactly one padded-and-shifted crop"
            used.add(matches[0])
        assert used == set(candidates)  # all (2p+1)² offsets occur among 256 draws

    @chex.variants(with_jit=True, without_jit=True)
    def test_flip_mirrors_width_or_keeps(self):
        image, x = hand_made_batch(64)
        out = np.asarray(self.variant(functools.partial(augment.augment, crop_padding=0, flip=True))(
            jax.random.PRNGKey(3), x))
        mirror = image[:, ::-1, :]
        flipped = np.array([np.array_equal(o, mirror) for o in out])
        kept = np.array([np.array_equal(o, image) for o in out])
        assert np.all(flipped ^ kept)  # each output is one of the two
        assert 0 < flipped.sum() < len(out)  # both happen

    @chex.variants(with_jit=True, without_jit=True)
    def test_everything_off_is_identity_and_key_decides(self):
        _, x = hand_made_batch(4)
        ident = self.variant(functools.partial(augment.augment, crop_padding=0, flip=False))
        np.testing.assert_array_equal(ident(jax.random.PRNGKey(0), x), x)
        x = jax.random.uniform(jax.random.PRNGKey(9), (16, 8, 8, 3))
        aug = self.variant(augment.augment)
        np.testing.assert_array_equal(aug(jax.random.PRNGKey(4), x), aug(jax.random.PRNGKey(4), x))
        assert not np.array_equal(aug(jax.random.PRNGKey(4), x), aug(jax.random.PRNGKey(5), x))

    def test_rejects_bad_input(self):
        with pytest.raises(ValueError, match="rank 4"):
            augment.augment(jax.random.PRNGKey(0), jnp.zeros((4, 4, 3)))
        with pytest.raises(ValueError, match="crop_padding"):
            augment.augment(jax.random.PRNGKey(0), jnp.zeros((1, 4, 4, 3)), crop_padding=-1)
