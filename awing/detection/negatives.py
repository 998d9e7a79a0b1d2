"""Generated images with no face in them: training negatives and a held-out test set that must give no face.

:func:`negative_image` draws one RGB uint8 image from ``(seed, index)`` alone, so a set is reproducible anywhere and
two seeds give two disjoint sets (training uses :data:`TRAIN_SEED`, the test set :data:`TEST_SEED`). Image ``i`` is of
kind ``NEGATIVE_KINDS[i % len(NEGATIVE_KINDS)]``, so every kind appears in every set of at least 12 images:

- ``flat``: one colour (greys included), with mild sensor noise on half of them.
- ``gradient``: a linear ramp between two colours at a random angle; ``radial``: a vignette-like radial ramp.
- ``noise``: Gaussian colour noise; ``blobs``: low-frequency noise (smoothed noise, upscaled), like out-of-focus
  backgrounds.
- ``text``: a page of random words and digits in Hershey fonts (``cv2.putText``) in rows, dark on light or the reverse.
- ``stripes``: sinusoidal bars at a random angle and period; ``checker``: a checkerboard, possibly rotated.
- ``bricks``: a brick wall (staggered rows, mortar lines, per-brick colour); ``tiles``: a grid of coloured squares.
- ``shapes``: random filled rectangles, lines and polygons on a plain background (no circles: two dark discs in a light
  one are a face for any detector).
- ``grain``: a wood-like texture (stretched noise modulating a sinusoid).

Sizes: width 160 to 640 and height 120 to 480 pixels, drawn per image. Nothing here reads a file.

>>> a, b = negative_image(TEST_SEED, 5), negative_image(TEST_SEED, 5)
>>> a.dtype, a.ndim, bool((a == b).all())
(dtype('uint8'), 3, True)
"""

from __future__ import annotations

import string

import cv2
import numpy as np

__all__ = ["NEGATIVE_KINDS", "TEST_COUNT", "TEST_SEED", "TRAIN_SEED", "negative_image", "negative_set"]

TRAIN_SEED = 1
TEST_SEED = 2026
TEST_COUNT = 60
"""Images in the held-out test set (5 of each kind)."""
FONTS = (cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_COMPLEX, cv2.FONT_HERSHEY_PLAIN,
         cv2.FONT_HERSHEY_TRIPLEX)  # fmt: skip


def _colour(rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 256, 3).astype(np.float32)


def _coords(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel grids ``(H, W)`` of y and x, float32."""
    ys, xs = np.mgrid[0:height, 0:width]
    return ys.astype(np.float32), xs.astype(np.float32)


def _blend(t: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-pixel mix ``(1 - t) a + t b`` of two colours for ``t`` ``(H, W)`` in [0, 1] -> ``(H, W, 3)``."""
    t = np.clip(t, 0, 1)[..., None]
    return (1 - t) * a + t * b


def _smooth_noise(rng: np.random.Generator, height: int, width: int, cell: int) -> np.ndarray:
    """Noise in [0, 1] varying over about ``cell`` pixels ``(H, W)``: a coarse random grid, upscaled bicubically."""
    coarse = rng.random((max(2, height // cell + 2), max(2, width // cell + 2))).astype(np.float32)
    big = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    return (big - big.min()) / max(float(big.max() - big.min()), 1e-6)


def _flat(rng, h, w):
    image = np.broadcast_to(_colour(rng), (h, w, 3)).copy()
    if rng.random() < 0.5:
        image += rng.normal(0, 3, image.shape)
    return image


def _gradient(rng, h, w):
    ys, xs = _coords(h, w)
    angle = rng.uniform(0, 2 * np.pi)
    t = np.cos(angle) * xs + np.sin(angle) * ys
    return _blend((t - t.min()) / max(float(t.max() - t.min()), 1e-6), _colour(rng), _colour(rng))


def _radial(rng, h, w):
    ys, xs = _coords(h, w)
    cy, cx = rng.uniform(0, h), rng.uniform(0, w)
    r = np.hypot(xs - cx, ys - cy) / rng.uniform(0.3, 1.0) / max(h, w)
    return _blend(r, _colour(rng), _colour(rng))


def _noise(rng, h, w):
    return rng.normal(rng.uniform(60, 200), rng.uniform(10, 70), (h, w, 3))


def _blobs(rng, h, w):
    return np.stack([_smooth_noise(rng, h, w, int(rng.integers(16, 96))) for _ in range(3)], axis=-1) * 255


def _text(rng, h, w):
    dark_on_light = rng.random() < 0.7
    paper, ink = (rng.uniform(200, 255), rng.uniform(0, 70)) if dark_on_light else (rng.uniform(0, 60), 230.0)
    image = np.full((h, w, 3), paper, np.float32)
    font, scale = FONTS[int(rng.integers(len(FONTS)))], float(rng.uniform(0.35, 1.2))
    thickness = 1 if scale < 0.8 else int(rng.integers(1, 3))
    line = int(cv2.getTextSize("Ag", font, scale, thickness)[0][1] * rng.uniform(1.8, 2.4)) + 2
    letters = string.ascii_letters + string.digits + ".,;:-()"
    for y in range(line, h, line):
        words = ["".join(rng.choice(list(letters), int(rng.integers(1, 10)))) for _ in range(int(rng.integers(3, 14)))]
        cv2.putText(image, " ".join(words), (int(rng.integers(2, 20)), y), font, scale, (ink,) * 3, thickness,
                    cv2.LINE_AA)  # fmt: skip
    return image


def _stripes(rng, h, w):
    ys, xs = _coords(h, w)
    angle, period = rng.uniform(0, np.pi), rng.uniform(4, 60)
    t = 0.5 + 0.5 * np.sin(2 * np.pi * (np.cos(angle) * xs + np.sin(angle) * ys) / period)
    return _blend(t, _colour(rng), _colour(rng))


def _checker(rng, h, w):
    ys, xs = _coords(h, w)
    angle, cell = rng.uniform(0, np.pi / 2), rng.uniform(6, 60)
    u, v = np.cos(angle) * xs + np.sin(angle) * ys, -np.sin(angle) * xs + np.cos(angle) * ys
    t = ((np.floor(u / cell) + np.floor(v / cell)) % 2).astype(np.float32)
    return _blend(t, _colour(rng), _colour(rng))


def _bricks(rng, h, w):
    mortar = rng.uniform(150, 220, 3).astype(np.float32)
    base = np.array([rng.uniform(120, 200), rng.uniform(40, 90), rng.uniform(20, 60)], np.float32)
    image = np.broadcast_to(mortar, (h, w, 3)).copy()
    bh = int(rng.integers(10, 40))
    bw = int(bh * rng.uniform(2.0, 3.5))
    gap = max(1, bh // 8)
    for row, y in enumerate(range(0, h, bh)):
        offset = (bw // 2) * (row % 2)
        for x in range(-offset, w, bw):
            colour = np.clip(base * rng.uniform(0.75, 1.2) + rng.normal(0, 8, 3), 0, 255)
            x0, x1 = max(x + gap, 0), min(x + bw - gap, w)
            image[y + gap : min(y + bh - gap, h), x0:x1] = colour
    return image + rng.normal(0, 6, image.shape)


def _tiles(rng, h, w):
    cell = int(rng.integers(12, 80))
    grid = rng.uniform(0, 255, (h // cell + 1, w // cell + 1, 3)).astype(np.float32)
    return cv2.resize(grid, (grid.shape[1] * cell, grid.shape[0] * cell), interpolation=cv2.INTER_NEAREST)[:h, :w]


def _shapes(rng, h, w):
    image = np.broadcast_to(_colour(rng), (h, w, 3)).copy()
    for _ in range(int(rng.integers(3, 25))):
        colour = tuple(float(c) for c in _colour(rng))
        p, q = (int(rng.integers(0, w)), int(rng.integers(0, h))), (int(rng.integers(0, w)), int(rng.integers(0, h)))
        kind = rng.integers(3)
        if kind == 0:
            cv2.rectangle(image, p, q, colour, -1)
        elif kind == 1:
            cv2.line(image, p, q, colour, int(rng.integers(1, 8)), cv2.LINE_AA)
        else:
            points = np.stack([rng.integers(0, w, 5), rng.integers(0, h, 5)], axis=1).astype(np.int32)
            cv2.fillPoly(image, [points], colour, cv2.LINE_AA)
    return image


def _grain(rng, h, w):
    ys, xs = _coords(h, w)
    warp = _smooth_noise(rng, h, w, int(rng.integers(30, 120))) * rng.uniform(10, 40)
    t = 0.5 + 0.5 * np.sin(2 * np.pi * (ys + warp) / rng.uniform(5, 25))
    dark = np.array([rng.uniform(70, 120), rng.uniform(40, 70), rng.uniform(10, 40)], np.float32)
    return _blend(t, dark, dark * rng.uniform(1.5, 2.0)) + rng.normal(0, 4, (h, w, 3))


_MAKERS = {
    "flat": _flat, "gradient": _gradient, "radial": _radial, "noise": _noise, "blobs": _blobs, "text": _text,
    "stripes": _stripes, "checker": _checker, "bricks": _bricks, "tiles": _tiles, "shapes": _shapes, "grain": _grain,
}  # fmt: skip
NEGATIVE_KINDS = tuple(_MAKERS)


def negative_image(seed: int, index: int) -> np.ndarray:
    """Image ``index`` of the negative set ``seed``: RGB uint8 ``H x W x 3`` of kind
    ``NEGATIVE_KINDS[index % len(NEGATIVE_KINDS)]`` (module docstring)."""
    if index < 0:
        raise ValueError(f"index must be >= 0, got {index}")
    rng = np.random.default_rng([int(seed), int(index)])
    height, width = int(rng.integers(120, 481)), int(rng.integers(160, 641))
    image = _MAKERS[NEGATIVE_KINDS[index % len(NEGATIVE_KINDS)]](rng, height, width)
    return np.clip(np.asarray(image, np.float32) + 0.5, 0, 255).astype(np.uint8)


def negative_set(seed: int = TEST_SEED, count: int = TEST_COUNT) -> list[np.ndarray]:
    """Images ``0 .. count - 1`` of the negative set ``seed`` (default: the held-out test set)."""
    return [negative_image(seed, i) for i in range(count)]
