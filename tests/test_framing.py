"""Framing a user's drawing: where the encoder's shape and the drawing agree on its size and place."""

import numpy as np
import pytest

from sdfjax.sketch2shape import framing, optimize, sketches


def _box_drawing(height: int, width: int, canvas: tuple[int, int] = (300, 400)) -> np.ndarray:
    """A rectangle outline of height x width pixels, off-centre on a larger white canvas, in [0, 1]."""
    grey = np.ones(canvas, np.float32)
    top, left = 40, 70
    grey[top, left:left + width] = grey[top + height - 1, left:left + width] = 0.0
    grey[top:top + height, left] = grey[top:top + height, left + width - 1] = 0.0
    return grey


def test_silhouette_box_is_the_masks_bounding_box_as_shares_of_the_image():
    hit = np.zeros((100, 100), bool)
    hit[20:60, 30:50] = True  # 40 rows x 20 columns, centred at row 40, column 40
    fill, centre = framing.silhouette_box(hit)
    assert fill == pytest.approx(0.4)
    assert centre == pytest.approx((-0.1, -0.1))
    assert framing.silhouette_box(np.zeros((8, 8), bool)) is None


def test_normalize_sketch_puts_the_drawing_at_the_asked_fill_and_centre():
    grey = _box_drawing(120, 60)
    for fill, centre in ((0.8, (0.0, 0.0)), (0.6, (0.1, -0.05)), (0.9, (-0.04, 0.03))):
        box = framing.silhouette_box(sketches.normalize_sketch(grey, 128, fill, centre=centre) < 128)
        assert box[0] == pytest.approx(fill, abs=2 / 128)
        assert box[1] == pytest.approx(centre, abs=1.5 / 128)
    # moved past the border (0.8 tall, centred 0.45 down: 0.05 to 0.85), the drawing is cut there, not wrapped
    moved = sketches.normalize_sketch(grey, 128, 0.8, centre=(0.0, 0.45)) < 128
    fill, centre = framing.silhouette_box(moved)
    assert fill == pytest.approx(0.45, abs=2 / 128) and centre == pytest.approx((0.0, 0.275), abs=1.5 / 128)
    assert not moved[:64].any()


def test_the_agreeing_fill_is_the_last_downward_crossing_of_the_rendered_fill():
    fills = np.arange(0.5, 1.0001, 0.1)
    # rendered = 0.5 + 0.4 f crosses f once, at 5/6, from above: linear, so interpolation is exact
    assert framing.agreeing_fill(fills, 0.5 + 0.4 * fills) == pytest.approx(5 / 6)
    # two crossings from above (0.55 and 0.85) and one from below (0.75): the largest from above
    rendered = np.array([0.6, 0.5, 0.6, 0.9, 0.8, 0.9])
    assert framing.agreeing_fill(fills, rendered) == pytest.approx(0.85)
    # never crossing: the tried fill whose render came closest
    assert framing.agreeing_fill(fills, fills + np.array([0.3, 0.2, 0.05, 0.1, 0.2, 0.3])) == pytest.approx(0.7)


def test_self_consistent_framing_finds_the_frame_of_a_shape_the_encoder_reads_from_the_drawings_size():
    """A stand-in encoder that reads a drawing's size and predicts a shape halfway between that size and the true
    one (0.62 of the image, centred at (0.05, -0.03)): only the true framing agrees with itself."""
    resolution, truth, true_centre = 64, 0.62, (0.05, -0.03)

    def encode(drawn):
        return np.asarray([[framing.silhouette_box(s < 128)[0]] for s in drawn])

    def silhouettes(latents):
        masks = np.zeros((len(latents), resolution, resolution), bool)
        for mask, (size,) in zip(masks, latents):
            half = (truth + 0.5 * (size - truth)) * resolution / 2
            cy, cx = (0.5 + true_centre[1]) * resolution, (0.5 + true_centre[0]) * resolution
            mask[int(round(cy - half)):int(round(cy + half)), int(round(cx - half)):int(round(cx + half))] = True
        return masks

    fill, centre = framing.self_consistent_framing(_box_drawing(150, 90), encode, silhouettes, resolution)
    assert fill == pytest.approx(truth, abs=0.02)
    assert centre == pytest.approx(true_centre, abs=1.5 / resolution)


def test_user_framing_accepts_fixed_and_fit_only():
    class Sketch(dict):
        get = dict.get

    assert optimize.user_framing(Sketch()) == "fixed"
    assert optimize.user_framing(Sketch(user_framing="fit")) == "fit"
    with pytest.raises(ValueError, match="user_framing='frame'"):
        optimize.user_framing(Sketch(user_framing="frame"))
