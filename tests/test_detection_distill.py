"""Distillation transforms (boxes follow the pixels) and the fusion of human and teacher boxes."""

from __future__ import annotations

import numpy as np
import pytest

from awing.detection.distill import DEGRADATIONS, degrade, fuse_targets, mosaic, zoom_out


def white_square(height: int, width: int, box: tuple[int, int, int, int]) -> np.ndarray:
    """Black image with a white rectangle covering the pixels of ``box`` (x0, y0, x1, y1 pixel edges)."""
    image = np.zeros((height, width, 3), np.uint8)
    x0, y0, x1, y1 = box
    image[y0:y1, x0:x1] = 255
    return image


def white_extent(image: np.ndarray) -> list[int]:
    """Pixel-edge box (x0, y0, x1, y1) of the bright pixels."""
    ys, xs = np.nonzero(image[..., 0] > 127)
    return [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]


def test_zoom_out_moves_boxes_with_the_pixels():
    image = white_square(200, 300, (100, 40, 180, 120))
    background = np.zeros((50, 50, 3), np.uint8)
    out, boxes = zoom_out(image, np.array([[100, 40, 180, 120]], np.float32), 0.5, background, np.random.default_rng(0))
    assert out.shape == image.shape
    np.testing.assert_allclose(boxes[0], white_extent(out), atol=1.0)  # resampling blurs one pixel at most
    assert boxes[0, 2] - boxes[0, 0] == pytest.approx(40.0)  # 80 px face at half size
    with pytest.raises(ValueError, match="factor"):
        zoom_out(image, boxes, 1.5, background, np.random.default_rng(0))


def test_mosaic_tiles_and_boxes():
    a = white_square(100, 200, (20, 10, 60, 50))  # fits a 160 x 120 tile at 0.8
    b = white_square(120, 120, (0, 0, 30, 30))
    out, boxes = mosaic([a, b], [np.array([[20, 10, 60, 50]]), np.array([[0, 0, 30, 30]])], (320, 240), (2, 2),
                        np.zeros((8, 8, 3), np.uint8))  # fmt: skip
    assert out.shape == (240, 320, 3) and boxes.shape == (2, 4)
    np.testing.assert_allclose(boxes[0], [16, 20 + 8, 48, 20 + 40], atol=1e-4)  # scale 0.8, centred: y offset 20
    np.testing.assert_allclose(boxes[1], [160 + 20, 0, 160 + 50, 30], atol=1e-4)  # scale 1, x offset 20
    np.testing.assert_allclose(boxes[0], white_extent(out[:, :160]), atol=1.0)
    with pytest.raises(ValueError, match="images"):
        mosaic([a] * 5, [np.zeros((0, 4))] * 5, (320, 240), (2, 2), a)


@pytest.mark.parametrize("kind", DEGRADATIONS)
def test_degradations_keep_the_geometry(kind):
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)
    out = degrade(image, kind, rng)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert not np.array_equal(out, image)
    if kind == "grey":
        assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
    with pytest.raises(ValueError, match="unknown degradation"):
        degrade(image, "sepia", rng)


def test_fuse_targets_rule():
    human = np.array([[0, 0, 40, 40]], np.float32)
    ulfd = (np.array([[2, 2, 42, 42], [100, 0, 140, 40], [200, 0, 240, 40]], np.float32),
            np.array([0.99, 0.95, 0.6], np.float32), 0.9, 0.5)  # fmt: skip
    yunet = (np.array([[101, 1, 141, 41], [300, 0, 340, 40], [400, 0, 440, 40]], np.float32),
             np.array([0.8, 0.92, 0.3], np.float32), 0.9, 0.6)  # fmt: skip
    boxes, ignore, from_teacher = fuse_targets(human, [ulfd, yunet])
    # the human face stays and its teacher box is dropped; the face both teachers found once (ULFD's box, 0.95 / 0.9,
    # outranks YuNet's 0.8 / 0.9); YuNet's confident face (0.92 / 0.9 ranks after 0.95 / 0.9); ULFD's 0.6 box is
    # doubtful: ignore; YuNet's 0.3 box is gone
    np.testing.assert_array_equal(boxes, [[0, 0, 40, 40], [100, 0, 140, 40], [300, 0, 340, 40], [200, 0, 240, 40]])
    assert ignore.tolist() == [False, False, False, True]
    assert from_teacher.tolist() == [False, True, True, True]


def test_fuse_targets_without_teacher_boxes():
    human = np.array([[0, 0, 10, 10]], np.float32)
    boxes, ignore, from_teacher = fuse_targets(human, [(np.zeros((0, 4)), np.zeros(0), 0.9, 0.5)])
    np.testing.assert_array_equal(boxes, human)
    assert ignore.tolist() == [False] and from_teacher.tolist() == [False]
