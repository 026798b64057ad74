"""Drawings as the sketch loss reads them: outline masks, line bands, carvable rays, hand-drawn strokes, bad files."""

import json
import os
import struct
import subprocess
import sys
import zlib

import numpy as np
import scipy.ndimage
import pytest
from PIL import Image

from sdfjax import errors
from sdfjax.sketch2shape import hand_drawn, sketches


def _frame_and_leg() -> np.ndarray:
    """(24, 32) uint8 black-on-white: a closed frame and a leg right of it."""
    frame = np.full((24, 32), 255, np.uint8)
    frame[4, 4:20] = frame[15, 4:20] = frame[4:16, 4] = frame[4:16, 19] = 0
    frame[6:14, 27] = 0
    return frame


def _chessboard_distance(mask: np.ndarray) -> np.ndarray:
    """Brute force: each pixel's chessboard distance to the nearest True pixel of `mask`."""
    rows, cols = np.nonzero(mask)
    ys, xs = np.indices(mask.shape)
    return np.maximum(np.abs(rows - ys[..., None]), np.abs(cols - xs[..., None])).min(axis=-1)


def test_a_line_band_leaves_the_background_next_to_the_lines_unknown():
    frame = _frame_and_leg()
    inside, known = sketches.outline_masks(frame)
    distance = _chessboard_distance(inside)
    for band in (1, 2):
        got_inside, got_known, carvable = sketches.view_masks(frame, line_band=band, carve_margin=band)
        assert (got_inside == inside).all()
        for y in range(24):
            for x in range(32):
                assert got_known[y, x] == (known[y, x] and (inside[y, x] or distance[y, x] > band)), (band, y, x)
        assert not (carvable & ~got_known).any()
    with pytest.raises(ValueError, match="config.sketch.line_band=-1"):
        sketches.view_masks(frame, line_band=-1)


def test_grown_lines_reach_every_pixel_within_the_chessboard_distance_and_keep_the_dtype():
    frame = _frame_and_leg()
    distance = _chessboard_distance(frame < 128)
    for pixels in (0, 1, 2):
        grown = sketches.grown_lines(np.stack([frame, frame[::-1]]), pixels)
        assert grown.dtype == np.uint8
        np.testing.assert_array_equal(grown[0] < 128, distance <= pixels)
        np.testing.assert_array_equal(grown[1], grown[0][::-1])  # each image on its own, not across the batch
    grey = frame.astype(np.float32) / 255.0
    np.testing.assert_array_equal(sketches.grown_lines(grey, 1) < 0.5, distance <= 1)
    with pytest.raises(ValueError, match="config.sketch.encoder_line_growth=-1"):
        sketches.grown_lines(frame, -1)


def test_the_carvable_mask_spares_the_rays_next_to_the_drawing_and_every_ray_of_a_drawing_with_gaps():
    frame = _frame_and_leg()
    inside, known = sketches.outline_masks(frame)
    distance = _chessboard_distance(inside)
    for margin in (0, 1, 3):
        got = sketches.view_masks(frame, tolerance=2, carve_margin=margin)[2]
        for y in range(24):
            for x in range(32):
                assert got[y, x] == (known[y, x] and distance[y, x] > margin), (margin, y, x)
    broken = frame.copy()
    broken[4, 10:13] = 255  # a 3-pixel gap in the top line: the drawing has gaps
    assert not sketches.view_masks(broken, tolerance=2, carve_margin=1)[2].any()
    assert sketches.view_masks(broken, carve_margin=1)[2].any()  # no tolerance: no gap rule
    # ... unless it may be carved far enough from its lines
    broken_known = sketches.outline_masks(broken, tolerance=2)[1]
    from_lines = _chessboard_distance(broken < 128)
    for margin in (2, 4):
        got = sketches.view_masks(broken, tolerance=2, carve_margin=1, gap_carve_margin=margin)[2]
        np.testing.assert_array_equal(got, broken_known & (from_lines > margin))
        assert got.any()
    with pytest.raises(ValueError, match="config.sketch.carve_margin=-1"):
        sketches.view_masks(frame, carve_margin=-1)


def test_outline_masks_leave_enclosed_background_unknown():
    sketch = np.full((40, 40), 255, np.uint8)
    sketch[5, 5:35] = sketch[34, 5:35] = sketch[5:35, 5] = sketch[5:35, 34] = 0  # a square frame
    inside, known = sketches.outline_masks(sketch)
    assert inside[5, 10] and known[5, 10]  # on a line: object
    assert not inside[0, 0] and known[0, 0]  # background reaching the border: not object
    assert not known[20, 20]  # enclosed by the lines: could be a face or a hole


def test_outline_tolerance_closes_a_broken_stroke():
    sketch = np.full((40, 40), 255, np.uint8)
    sketch[5, 5:35] = sketch[34, 5:35] = sketch[5:35, 5] = sketch[5:35, 34] = 0  # a square frame ...
    sketch[34, 18:22] = 255  # ... whose bottom side has a 4-pixel gap, as a hand leaves
    inside, known = sketches.outline_masks(sketch)
    assert known[20, 20] and not inside[20, 20]  # without tolerance the outside flows in: "not object"
    assert sketches.outline_masks(sketch, tolerance=1)[1][20, 20]  # 1 pixel closes gaps of 2, not 4
    inside, known = sketches.outline_masks(sketch, tolerance=2)
    assert not known[20, 20]  # enclosed again: unknown
    assert known[0, 0] and not inside[0, 0]  # far outside: still outside
    assert not known[3, 20] and known[1, 20]  # within 2 pixels of a line: unknown; farther: outside
    assert inside[5, 10] and known[5, 10]  # the lines themselves: object
    assert (sketches.outline_masks(sketch, tolerance=0)[1] == sketches.outline_masks(sketch)[1]).all()
    closed_frame = sketch.copy()
    closed_frame[34, 18:22] = 0  # the same frame drawn closed: the tolerance leaves its masks as they are
    for got, plain in zip(sketches.outline_masks(closed_frame, tolerance=2), sketches.outline_masks(closed_frame)):
        np.testing.assert_array_equal(got, plain)
    assert sketches.outline_masks(closed_frame, tolerance=2)[1][3, 20]  # next to its lines: known background
    with pytest.raises(ValueError, match="config.sketch.outline_tolerance=-1"):
        sketches.outline_masks(sketch, tolerance=-1)


def test_hand_drawn_style_moves_strokes_a_little_and_is_reproducible():
    sketch = np.full((64, 64), 255, np.uint8)
    sketch[10, 10:54] = sketch[50, 10:54] = sketch[10:51, 10] = sketch[10:51, 53] = 0  # a frame
    sketch[10:51, 32] = 0  # and a bar: junctions where it meets the frame
    a = hand_drawn.hand_drawn(sketch, np.random.default_rng(3))
    b = hand_drawn.hand_drawn(sketch, np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, sketch)
    drawn, original = np.argwhere(a < 128), np.argwhere(sketch < 128)
    assert 0.5 < len(drawn) / len(original) < 2.0
    # every drawn pixel stays near an original line: strokes are moved a little, not scattered
    nearest = np.min(np.linalg.norm(drawn[:, None] - original[None], axis=-1), axis=1)
    assert np.median(nearest) <= 2.0 and nearest.max() <= 6.0


def _png_header_only(path, width: int, height: int) -> None:
    """A PNG whose header claims width x height pixels over a few bytes of data (a decompression bomb's shape)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                + chunk(b"IEND", b""))


def test_bad_sketch_files_are_refused_with_their_name(tmp_path):
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(errors.DataError, match="notes.png: not a readable image"):
        sketches.load_image(str(tmp_path / "notes.png"))
    Image.fromarray(np.full((50, 50), 200, np.uint8)).save(tmp_path / "blank.png")
    with pytest.raises(errors.DataError, match="blank.png: the image is blank"):
        sketches.normalize_sketch(sketches.load_image(str(tmp_path / "blank.png")), 32,
                                  name=str(tmp_path / "blank.png"))
    Image.new("L", (4100, 4100), 255).save(tmp_path / "huge.png")
    with pytest.raises(errors.DataError, match="huge.png: the image is 4100 x 4100 pixels"):
        sketches.load_image(str(tmp_path / "huge.png"))
    _png_header_only(tmp_path / "bomb.png", 100_000, 100_000)
    with pytest.raises(errors.DataError, match="bomb.png: "):
        sketches.load_image(str(tmp_path / "bomb.png"))


def test_sixteen_bit_turned_animated_and_other_format_images_are_read_as_people_mean_them(tmp_path):
    lines = np.full((60, 80), 60000, np.uint16)
    lines[10:50, 20] = lines[10, 20:60] = 16000  # a 16-bit line drawing: not clamped into a blank page
    Image.fromarray(lines).save(tmp_path / "deep.png")
    grey = sketches.load_image(str(tmp_path / "deep.png"))
    np.testing.assert_allclose(grey[30, 20], 16000 / 65535, atol=1e-6)
    assert sketches.normalize_sketch(grey, 32, name="deep.png").min() == 0
    drawing = np.full((40, 100), 255, np.uint8)
    drawing[5:35, 10] = 0
    exif = Image.Exif()
    exif[0x0112] = 6  # a phone held upright: the pixels are stored turned by 90 degrees
    Image.fromarray(drawing).save(tmp_path / "phone.jpg", exif=exif)
    assert sketches.load_image(str(tmp_path / "phone.jpg")).shape == (100, 40)
    frames = [Image.fromarray(drawing), Image.fromarray(255 - drawing)]
    frames[0].save(tmp_path / "moving.gif", save_all=True, append_images=frames[1:])
    with pytest.warns(UserWarning, match="moving.gif: an animated image; its first frame"):
        assert sketches.load_image(str(tmp_path / "moving.gif"))[20, 10] < 0.1
    Image.fromarray(drawing).save(tmp_path / "scan.tiff")
    with pytest.raises(errors.DataError, match="scan.tiff: not a readable image in an accepted format"):
        sketches.load_image(str(tmp_path / "scan.tiff"))
    with pytest.raises(errors.DataError, match="dot.png: the image is 1 x 1 pixels"):
        sketches.normalize_sketch(np.zeros((1, 1), np.float32), 32, name="dot.png")


def test_a_view_must_be_finite_degrees_with_the_elevation_within_a_half_turn():
    from sdfjax.app.service import checked_view

    assert checked_view("30", 10, "sketch 1") == (30.0, 10.0)
    for azimuth, elevation in ((float("nan"), 10.0), (30.0, float("inf")), (30.0, 91.0), ("left", 0.0), (None, 0.0)):
        with pytest.raises(errors.DataError, match="sketch 1: "):
            checked_view(azimuth, elevation, "sketch 1")


PEOPLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "user_sketches")


def test_the_people_style_drawings_are_remade_exactly_from_views_above_by_their_generator():
    from data_gen import user_sketches

    entries = json.loads(open(os.path.join(PEOPLE, "sketches.json")).read())
    assert len(entries) >= 64 and len({e["obj_id"] for e in entries}) >= 16
    kinds = {name: k for k, (name, _, _) in enumerate(user_sketches.VIEW_KINDS)}
    for e in entries:
        view = e["file"][len(e["obj_id"]) + 1:-len(".png")]
        assert (view, e["azimuth"], e["elevation"]) == user_sketches.view_of(e["obj_id"], kinds[view])
        assert 0 <= e["elevation"] <= 35  # from above, or (the side view) nearly level
    assert {e["file"][len(e["obj_id"]) + 1:-4] for e in entries[:8]} == set(kinds)  # the first few: every view kind
    for e in entries[:2]:  # the same command draws the same pixels
        mesh = user_sketches.normalized_mesh(os.path.join(PEOPLE, e["mesh"]))
        view = e["file"][len(e["obj_id"]) + 1:-4]
        again = user_sketches.draw_user_sketch(mesh, e["azimuth"], e["elevation"],
                                               seed=zlib.crc32(f"{e['obj_id']}_{view}".encode()))
        stored = np.asarray(Image.open(os.path.join(PEOPLE, e["file"])))
        np.testing.assert_array_equal(again, stored)
        assert stored.shape == (300, 360) and 0.01 < np.mean(stored < 128) < 0.2


def test_the_people_style_generator_shares_no_code_with_the_training_augmentation():
    probe = ("import sys, data_gen.user_sketches; "
             "print([m for m in sys.modules if m.startswith(('sdfjax.train', 'sdfjax.sketch2shape'))])")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", probe], cwd=root, capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, PYTHONPATH=root))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"  # neither the augmentation (sdfjax.train.augment) nor the hand-drawn style


def test_joined_strokes_follow_a_line_across_its_pieces_and_not_around_a_corner():
    from data_gen import user_sketches

    pieces = [np.array([[0.0, 0.0], [5.0, 0.0]]), np.array([[11.0, 0.0], [5.5, 0.0]]),  # one line, a piece reversed
              np.array([[11.2, 0.5], [11.2, 8.0]])]  # a right angle at its end: another stroke
    strokes = user_sketches.join_strokes(pieces, join=1.0)
    assert len(strokes) == 2
    np.testing.assert_allclose(strokes[0][[0, -1]], [[0.0, 0.0], [11.0, 0.0]])


@pytest.mark.parametrize("resolution", [64, 128])
def test_a_thin_and_a_thick_pen_read_alike(resolution):
    """Lines 1 and 5 px wide on a 256 px page come out as the same one-pixel lines (the dataset's sketches' width)."""
    from PIL import ImageDraw

    def drawn(width):
        page = Image.new("L", (256, 256), 255)
        pen = ImageDraw.Draw(page)
        pen.line([(40, 200), (40, 60), (200, 60), (200, 200)], fill=0, width=width, joint="curve")  # a chair's back
        pen.line([(40, 140), (200, 140)], fill=0, width=width)  # and seat
        return np.asarray(page, np.float32) / 255

    thin, thick = (sketches.normalize_sketch(drawn(w), resolution, fill=0.8) < 128 for w in (1, 5))
    for a, b in ((thin, thick), (thick, thin)):
        distance = scipy.ndimage.distance_transform_edt(~b)
        assert distance[a].max() <= 2 and distance[a].mean() <= 0.5  # every line pixel within a pixel or two
    assert abs(int(thin.sum()) - int(thick.sum())) <= 0.1 * thin.sum()  # no doubled or widened lines
    # one pixel wide: no 2 x 2 block of ink
    assert not (thick[:-1, :-1] & thick[1:, :-1] & thick[:-1, 1:] & thick[1:, 1:]).any()
