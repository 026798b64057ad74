"""The Siamese encoder of Sketch2Shape: sketches and normal maps -> one embedding space.

    model = from_config(config.siamese)
    params = init_params(model, key, resolution)
    e_sketch = model.apply(params, sketch_input(sketches), modality="sketch")    # (B, D)
    e_normal = model.apply(params, normal_input(normal_maps), modality="normal")  # (B, D)

Each tower is a ResNet-18-style CNN (He et al. 2016, Table 1: a 7x7/2 stem, a 3x3/2 max
pool, four stages of two basic blocks with widths w, 2w, 4w, 8w, global average pooling)
ending in a linear map to `embedding_dim` and, by default, L2 normalisation so that
distances lie in [0, 2] and a triplet margin has a fixed meaning. Sketch2Shape's towers
are ImageNet ResNet-18s; nothing can be downloaded here, so ours train from scratch and
`width` sizes them (64 is ResNet-18's).

GroupNorm (Wu & He 2018) stands in for BatchNorm: it keeps no running statistics, so the
encoder is the same pure function in training, in retrieval and inside the
sketch-to-shape loss, where it is differentiated through one rendered image at a time.

`shared=True` is Sketch2Shape's single tower for both modalities (sketches enter as grey
RGB); `shared=False` gives each modality its own tower. Inputs are float images in
[-1, 1] (see `sketch_input` / `normal_input`), any square resolution >= 32.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

MODALITIES = ("sketch", "normal")
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def _as_unit(images: jax.Array) -> jax.Array:
    """uint8 in [0, 255] or float in [0, 1] -> float32 in [0, 1]."""
    if images.dtype == jnp.uint8:
        return images.astype(jnp.float32) / 255.0
    return images.astype(jnp.float32)


def sketch_input(sketches: jax.Array) -> jax.Array:
    """Sketches (..., H, W) (uint8 or [0, 1], black lines on white) -> (..., H, W, 3) in [-1, 1]."""
    x = _as_unit(sketches) * 2.0 - 1.0
    return jnp.repeat(x[..., None], 3, axis=-1)


def normal_input(normal_maps: jax.Array) -> jax.Array:
    """Normal maps (..., H, W, 3) (uint8 or [0, 1], (n + 1) / 2 on white) -> (..., H, W, 3) in [-1, 1]."""
    return _as_unit(normal_maps) * 2.0 - 1.0


def _norm(channels: int) -> nn.Module:
    return nn.GroupNorm(num_groups=min(32, max(1, channels // 4)))


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (He et al. 2016, Fig. 2)."""

    features: int
    strides: int = 1
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        conv = lambda f, k, s, name: nn.Conv(f, (k, k), (s, s), padding="SAME", use_bias=False,  # noqa: E731
                                              dtype=self.dtype, name=name)
        y = nn.relu(_norm(self.features)(conv(self.features, 3, self.strides, "conv1")(x)))
        y = _norm(self.features)(conv(self.features, 3, 1, "conv2")(y))
        if x.shape[-1] != self.features or self.strides != 1:
            x = _norm(self.features)(conv(self.features, 1, self.strides, "shortcut")(x))
        return nn.relu(x + y)


class Tower(nn.Module):
    """One ResNet-18-style encoder: (B, H, W, 3) in [-1, 1] -> (B, embedding_dim)."""

    width: int = 64
    stage_blocks: Sequence[int] = (2, 2, 2, 2)
    embedding_dim: int = 128
    normalize: bool = True
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = nn.Conv(self.width, (7, 7), (2, 2), padding="SAME", use_bias=False, dtype=self.dtype, name="stem")(x)
        x = nn.relu(_norm(self.width)(x))
        x = nn.max_pool(x, (3, 3), (2, 2), padding="SAME")
        for stage, blocks in enumerate(self.stage_blocks):
            for block in range(blocks):
                strides = 2 if stage > 0 and block == 0 else 1
                x = BasicBlock(self.width * 2**stage, strides, self.dtype, name=f"stage{stage}_block{block}")(x)
        x = jnp.mean(x.astype(jnp.float32), axis=(-3, -2))
        e = nn.Dense(self.embedding_dim, name="embed")(x)
        if self.normalize:
            e = e / jnp.sqrt(jnp.sum(e**2, axis=-1, keepdims=True) + 1e-12)
        return e


class Siamese(nn.Module):
    """One tower for both modalities (shared) or one per modality; see the module docstring."""

    width: int = 64
    stage_blocks: Sequence[int] = (2, 2, 2, 2)
    embedding_dim: int = 128
    normalize: bool = True
    shared: bool = True
    compute_dtype: str = "float32"

    def setup(self):
        tower = lambda name: Tower(self.width, tuple(self.stage_blocks), self.embedding_dim,  # noqa: E731
                                   self.normalize, DTYPES[self.compute_dtype], name=name)
        if self.shared:
            self.towers = {"sketch": tower("tower"), "normal": None}
        else:
            self.towers = {"sketch": tower("sketch_tower"), "normal": tower("normal_tower")}

    def __call__(self, images: jax.Array, modality: str) -> jax.Array:
        """Embeddings (B, D) of images (B, H, W, 3) in [-1, 1] of one modality."""
        if modality not in MODALITIES:
            raise ValueError(f"modality {modality!r}: expected one of {MODALITIES}")
        tower = self.towers[modality] or self.towers["sketch"]
        return tower(images)

    def embed_both(self, sketches: jax.Array, normals: jax.Array) -> tuple[jax.Array, jax.Array]:
        return self(sketches, "sketch"), self(normals, "normal")


def from_config(siamese_config) -> Siamese:
    return Siamese(width=siamese_config.width, stage_blocks=tuple(siamese_config.stage_blocks),
                   embedding_dim=siamese_config.embedding_dim, normalize=siamese_config.normalize,
                   shared=siamese_config.shared_tower, compute_dtype=siamese_config.compute_dtype)


def init_params(model: Siamese, key: jax.Array, resolution: int):
    """Parameters of every tower, for square images of `resolution` pixels."""
    dummy = jnp.zeros((1, resolution, resolution, 3), jnp.float32)
    return model.init(key, dummy, dummy, method=Siamese.embed_both)


def embed(model: Siamese, params, images: jax.Array, modality: str) -> jax.Array:
    """Embeddings of raw images: uint8/[0, 1] sketches (B, H, W) or normal maps (B, H, W, 3)."""
    x = sketch_input(images) if modality == "sketch" else normal_input(images)
    return model.apply(params, x, modality)
