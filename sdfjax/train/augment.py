"""Sketch augmentations applied on the device inside a training step: pure functions of (H, W) images.

Sketches are float images in [0, 1], dark lines on a white background (1.0), so every
warp fills with white. The Siamese trainer (sdfjax.train.siamese) rotates, thickens
and flips; the sketch-to-latent trainer (sdfjax.train.latent_encoder) also scales, shifts,
wobbles and breaks strokes (`augment_sketch`), and both draw the lines as a hand would
(`hand_strokes`: lines run past their ends and corners, some parts drawn twice a little
apart, the pen wider in places): the variations a person's drawing has and the dataset's
clean edge maps do not. (The dataset's sketches hold no hidden lines, as people draw.)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def warp_image(image: jax.Array, angle: jax.Array = 0.0, scale: jax.Array = 1.0, shift: jax.Array | None = None,
               offsets: jax.Array | None = None, fill: float = 1.0) -> jax.Array:
    """(H, W) image rotated by `angle` radians and scaled by `scale` about its centre, then moved by `shift`
    (2,) pixels (down, right), with an optional per-pixel displacement `offsets` (2, H, W) in pixels;
    bilinear, `fill` outside."""
    h, w = image.shape
    i, j = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32), indexing="ij")
    ci, cj = (h - 1) / 2.0, (w - 1) / 2.0
    if shift is not None:
        i, j = i - shift[0], j - shift[1]
    c, s = jnp.cos(angle) / scale, jnp.sin(angle) / scale
    src_i = ci + c * (i - ci) - s * (j - cj)
    src_j = cj + s * (i - ci) + c * (j - cj)
    if offsets is not None:
        src_i, src_j = src_i + offsets[0], src_j + offsets[1]
    return jax.scipy.ndimage.map_coordinates(image, [src_i, src_j], order=1, mode="constant", cval=fill)


def rotate_image(image: jax.Array, angle: jax.Array, fill: float = 1.0) -> jax.Array:
    """(H, W) image rotated by `angle` radians about its centre (bilinear; `fill` outside)."""
    return warp_image(image, angle, fill=fill)


def thicken_lines(sketch: jax.Array, pixels: jax.Array, max_pixels: int) -> jax.Array:
    """Dark lines on light (H, W) grown by `pixels` (0..max_pixels) 3x3 minimum filters."""
    out = grown = sketch
    for t in range(1, max_pixels + 1):
        grown = jax.lax.reduce_window(grown, jnp.inf, jax.lax.min, (3, 3), (1, 1), "SAME")
        out = jnp.where(pixels >= t, grown, out)
    return out


def flip_pair(sketch: jax.Array, normal_map: jax.Array, right: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Left-right mirror of a sketch (H, W) and its normal map (H, W, 3) in [0, 1].

    The mirror image is the view of the shape reflected across the plane through the
    camera's forward and up axes, so each normal n becomes n - 2 (n . r) r with r the
    camera's right vector (object frame); the white background stays white.
    """
    background = jnp.all(normal_map >= 1.0, axis=-1, keepdims=True)
    n = normal_map * 2.0 - 1.0
    n = n - 2.0 * jnp.sum(n * right, axis=-1, keepdims=True) * right
    mirrored = jnp.where(background, 1.0, (n + 1.0) / 2.0)
    return sketch[:, ::-1], mirrored[:, ::-1]


def smooth_offsets(key: jax.Array, shape: tuple[int, int], amplitude: float, cells: int = 4) -> jax.Array:
    """(2, H, W) displacement in pixels: a `cells` x `cells` grid of normal draws (std `amplitude`) resized
    bilinearly, so neighbouring pixels move together (a hand's slow wobble, not noise)."""
    coarse = amplitude * jax.random.normal(key, (2, cells, cells))
    return jax.image.resize(coarse, (2, *shape), "linear")


def erase_boxes(key: jax.Array, image: jax.Array, count: int, max_size: int) -> jax.Array:
    """`image` (H, W) with `count` random axis-aligned boxes of 1..max_size pixels a side set to white."""
    h, w = image.shape
    k_centre, k_size = jax.random.split(key)
    centres = jax.random.uniform(k_centre, (count, 2)) * jnp.asarray([h, w], jnp.float32)
    halves = jax.random.randint(k_size, (count, 2), 1, max_size + 1).astype(jnp.float32) / 2.0
    i, j = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32), indexing="ij")
    inside = ((jnp.abs(i[None] - centres[:, 0, None, None]) < halves[:, 0, None, None])
              & (jnp.abs(j[None] - centres[:, 1, None, None]) < halves[:, 1, None, None]))
    return jnp.where(jnp.any(inside, axis=0), 1.0, image)


# the 8 neighbour steps (down, right) in pixels
NEIGHBOURS = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))


def _shifted(mask: jax.Array, di: int, dj: int) -> jax.Array:
    """`mask` (H, W) moved by (di, dj) pixels (down, right), False where nothing moved in."""
    h, w = mask.shape
    padded = jnp.pad(mask, ((abs(di), abs(di)), (abs(dj), abs(dj))))
    return jax.lax.dynamic_slice(padded, (abs(di) - di, abs(dj) - dj), (h, w))


def overshoot_lines(key: jax.Array, sketch: jax.Array, max_pixels: int, share: float, run: int = 4) -> jax.Array:
    """Lines run on past where they stop (their ends, and each side of a corner) by 1..max_pixels pixels, at a
    random `share` of those places: wherever `run` line pixels in a row along one of the 8 directions end at a
    pixel with at most two line neighbours (an end or a corner, not the side of a thick line), the line goes on
    along that direction (a hand that overshoots its target)."""
    line = sketch < 0.5
    k_where, k_length = jax.random.split(key)
    length = jnp.where(jax.random.uniform(k_where, line.shape) < share,
                       jax.random.randint(k_length, line.shape, 1, max_pixels + 1), 0)
    neighbours = sum(_shifted(line, di, dj).astype(jnp.int32) for di, dj in NEIGHBOURS)
    grown = jnp.zeros_like(line)
    for di, dj in NEIGHBOURS:
        behind = line & (neighbours <= 2)
        for t in range(1, run + 1):  # `run` line pixels behind this one along (-di, -dj)
            behind = behind & _shifted(line, di * t, dj * t)
        stops = behind & ~_shifted(line, -di, -dj)  # ... and none ahead: the line stops here
        for t in range(1, max_pixels + 1):
            grown = grown | _shifted(stops & (length >= t), di * t, dj * t)
    return jnp.where(grown, jnp.minimum(sketch, 0.0), sketch)


def smooth_mask(key: jax.Array, shape: tuple[int, int], share: float, cells: int = 6) -> jax.Array:
    """(H, W) bool: `share` of the image, in smooth blobs (regions of a hand's drawing that vary together)."""
    field = jax.image.resize(jax.random.normal(key, (cells, cells)), shape, "linear")
    return field > jnp.quantile(field, 1.0 - share)


def hand_strokes(key: jax.Array, sketch: jax.Array, overshoot_pixels: int, overshoot_share: float,
                 twice_share: float, twice_pixels: float, wide_share: float) -> jax.Array:
    """A clean edge sketch (H, W) drawn as a hand draws: lines overshoot their ends and corners
    (`overshoot_lines`), in about `twice_share` of the image drawn a second time about `twice_pixels` away
    (a displaced copy), and in about `wide_share` of it one pixel wider. Zero shares leave the sketch as it is."""
    h, w = sketch.shape
    k = jax.random.split(key, 5)
    if overshoot_pixels > 0 and overshoot_share > 0:
        sketch = overshoot_lines(k[0], sketch, overshoot_pixels, overshoot_share)
    if twice_share > 0:
        second = warp_image(sketch, shift=jax.random.normal(k[1], (2,)) * twice_pixels,
                            offsets=smooth_offsets(k[2], (h, w), twice_pixels / 2))
        sketch = jnp.where(smooth_mask(k[3], (h, w), twice_share), jnp.minimum(sketch, second), sketch)
    if wide_share > 0:
        sketch = thicken_lines(sketch, smooth_mask(k[4], (h, w), wide_share).astype(jnp.int32), 1)
    return sketch


def hand_strokes_from_config(key: jax.Array, sketch: jax.Array, section) -> jax.Array:
    """`hand_strokes` with a config section's settings (config.encoder or config.siamese); absent fields: none."""
    return hand_strokes(key, sketch, int(section.get("overshoot_pixels", 0)), float(section.get("overshoot_share", 0)),
                        float(section.get("twice_share", 0)), float(section.get("twice_pixels", 0)),
                        float(section.get("wide_share", 0)))


def augment_sketch(key: jax.Array, sketch: jax.Array, encoder_config) -> jax.Array:
    """One sketch (H, W) in [0, 1] as a person might have drawn it (sdfjax.train.latent_encoder's augmentation).

    Small rotation (+-rotation_degrees), scale (1 +- scale_range), shift (+-shift_fraction
    of the side), a smooth wobble of std `wobble_pixels`, lines thickened by
    0..max_dilation pixels, and `drop_boxes` erased boxes of up to `drop_size` pixels
    (dropped and broken strokes), each drawn independently per sketch; first, the lines are
    drawn as a hand draws them (`hand_strokes`).
    """
    ec = encoder_config
    h, w = sketch.shape
    k = jax.random.split(key, 7)
    sketch = hand_strokes_from_config(k[6], sketch, ec)
    limit = np.radians(ec.rotation_degrees)
    angle = jax.random.uniform(k[0], (), minval=-limit, maxval=limit)
    scale = 1.0 + jax.random.uniform(k[1], (), minval=-ec.scale_range, maxval=ec.scale_range)
    shift = jax.random.uniform(k[2], (2,), minval=-1.0, maxval=1.0) * ec.shift_fraction * h
    offsets = smooth_offsets(k[3], (h, w), ec.wobble_pixels) if ec.wobble_pixels > 0 else None
    sketch = warp_image(sketch, angle, scale, shift, offsets)
    if ec.max_dilation > 0:
        sketch = thicken_lines(sketch, jax.random.randint(k[4], (), 0, ec.max_dilation + 1), ec.max_dilation)
    if ec.drop_boxes > 0:
        sketch = erase_boxes(k[5], sketch, ec.drop_boxes, ec.drop_size)
    return sketch
