"""Build ``awing/mean_face.py``: a mean 3D 68-point face by rigid affine structure from motion (no downloads).

Run from the repository root::

    python scripts/build_mean_face.py [--data ../shared/data/aflw-21] [--out awing/mean_face.py]

Data: the teacher's 68 points of the AFLW *training* faces (``teacher68_3ddfa_v2.npz``, ``pts68_crop`` (N, 2, 68),
faces at every yaw), the 95 % of faces whose teacher points agree best with the human points (``agree19``).
AFLW2000-3D, the test set, is never read.

Method (Tomasi & Kanade, IJCV 1992, "Shape and motion from image streams under orthography"; the metric upgrade
for scaled orthography as in Morita & Kanade, PAMI 1997):

1. Centre each face's points on their mean and stack them into the ``2N x 68`` measurement matrix ``W``.
2. Rank-3 truncated SVD: ``W ~ M S`` with ``M = U_3 Sigma_3`` (``2N x 3``, per face two camera rows) and
   ``S = V_3^T`` (``3 x 68``), known up to an invertible ``3 x 3`` matrix ``Q``.
3. Metric upgrade: ``L = Q Q^T`` (symmetric, 6 unknowns) from the linear constraints of scaled orthography on every
   face, ``m1 L m1^T - m2 L m2^T = 0`` and ``m1 L m2^T = 0`` (the two rows are orthogonal and of equal norm); the
   least-squares null vector, ``Q = V sqrt(Lambda)`` from the eigen-decomposition of ``L``; shape ``X = Q^-1 S``.
4. Frame: x from the image-left to the image-right outer eye corner (points 36 -> 45), y down towards the chin
   (point 8), z = x cross y (away from the camera). The depth-reversal ambiguity of orthography is resolved by the
   nose tip (point 30) being nearer the camera (smaller z) than the eye corners.
5. Left-right symmetric: the mean of the shape and its mirror image (x negated, the 68-point flip permutation);
   scale: outer eye corner distance 1.

Prints the singular values (rank-3 check) and the symmetric residual, and writes the table as a Python module.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from awing.landmarks import get_scheme

KEEP_PERCENTILE = 95.0


def factorise(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(N, 2, K)`` 2D points -> affine cameras ``M`` (2N, 3) and affine shape ``S`` (3, K); and prints the
    normalised singular values."""
    n, _, k = points.shape
    W = (points - points.mean(axis=2, keepdims=True)).reshape(2 * n, k)
    U, s, Vt = np.linalg.svd(W, full_matrices=False)
    print("normalised singular values:", np.round(s[:6] / s[0], 4).tolist())
    return U[:, :3] * s[:3], Vt[:3]


def _quadratic_row(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Coefficients of ``a L b^T`` in the 6 unknowns ``(L00, L01, L02, L11, L12, L22)`` of a symmetric ``L``."""
    return np.stack(
        [
            a[:, 0] * b[:, 0],
            a[:, 0] * b[:, 1] + a[:, 1] * b[:, 0],
            a[:, 0] * b[:, 2] + a[:, 2] * b[:, 0],
            a[:, 1] * b[:, 1],
            a[:, 1] * b[:, 2] + a[:, 2] * b[:, 1],
            a[:, 2] * b[:, 2],
        ],
        axis=1,
    )


def metric_upgrade(M: np.ndarray, S: np.ndarray) -> np.ndarray:
    """Euclidean shape ``(3, K)`` from the affine factorisation (step 3 of the module docstring)."""
    m1, m2 = M[0::2], M[1::2]
    A = np.concatenate([_quadratic_row(m1, m1) - _quadratic_row(m2, m2), _quadratic_row(m1, m2)])
    l = np.linalg.svd(A)[2][-1]
    L = np.array([[l[0], l[1], l[2]], [l[1], l[3], l[4]], [l[2], l[4], l[5]]])
    if np.linalg.eigvalsh(L).sum() < 0:  # the null vector's sign is arbitrary; L must be positive definite
        L = -L
    w, V = np.linalg.eigh(L)
    if w.min() <= 0:
        raise ValueError(f"metric upgrade failed: L is not positive definite (eigenvalues {w.tolist()})")
    return np.linalg.solve(V * np.sqrt(w), S)


def canonical_frame(X: np.ndarray) -> np.ndarray:
    """Steps 4 and 5: ``(3, 68)`` shape -> ``(68, 3)`` in the face frame, symmetric, outer eye distance 1."""
    x_axis = X[:, 45] - X[:, 36]
    x_axis /= np.linalg.norm(x_axis)
    down = X[:, 8] - 0.5 * (X[:, 36] + X[:, 45])
    y_axis = down - x_axis * (down @ x_axis)
    y_axis /= np.linalg.norm(y_axis)
    R = np.stack([x_axis, y_axis, np.cross(x_axis, y_axis)])
    Y = R @ (X - X.mean(axis=1, keepdims=True))
    if Y[2, 30] > 0.5 * (Y[2, 36] + Y[2, 45]):  # the nose tip must be nearer the camera than the eyes
        Y[2] *= -1
    mirror = Y[:, list(get_scheme("68").flip_index)] * np.array([[-1.0], [1.0], [1.0]])
    print(f"asymmetry before symmetrising: {np.abs(Y - mirror).mean() / np.linalg.norm(Y[:, 45] - Y[:, 36]):.5f}")
    Y = 0.5 * (Y + mirror)
    Y /= np.linalg.norm(Y[:, 45] - Y[:, 36])
    return Y.T


def write_module(path: Path, shape: np.ndarray, used: int, total: int) -> None:
    rows = "\n".join(f"        [{x:.5f}, {y:.5f}, {z:.5f}]," for x, y, z in shape)
    text = f'''"""Mean 3D face of the 68 iBUG points, written by ``scripts/build_mean_face.py`` (do not edit by hand).

Provenance: rigid affine structure from motion (Tomasi-Kanade factorisation and metric upgrade) of the 68-point
teacher labels (3DDFA_V2) of {used:,} of the {total:,} AFLW training faces (those whose teacher points agree best
with the human points); no AFLW2000-3D face was used. Frame: x from the image-left to the image-right outer eye
corner, y down (towards the chin), z away from the camera; centred on the mean of the 68 points, outer eye corner
distance 1, left-right symmetric. Research use, like the AFLW data it comes from.
"""

import numpy as np

MEAN_FACE_68 = np.array(
    [
{rows}
    ]
)
"""``(68, 3)`` float64 ``(x, y, z)`` in the frame of the module docstring."""
'''
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/aflw-21"))
    parser.add_argument("--out", type=Path, default=Path("awing/mean_face.py"))
    args = parser.parse_args()
    teacher = np.load(args.data / "teacher68_3ddfa_v2.npz")
    points, agree = teacher["pts68_crop"].astype(np.float64), teacher["agree19"]
    keep = agree <= np.percentile(agree, KEEP_PERCENTILE)
    M, S = factorise(points[keep])
    shape = canonical_frame(metric_upgrade(M, S))
    write_module(args.out, shape, int(keep.sum()), len(points))
    print(f"wrote {args.out} from {int(keep.sum())} of {len(points)} faces")


if __name__ == "__main__":
    main()
