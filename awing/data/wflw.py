"""WFLW and the WFLW-style landmark list (any point count).

One face per line, whitespace-separated (methods.md §5.3): 2K coordinates (x0 y0 x1 y1 ...), 4 box values
(x_min y_min x_max y_max), 6 attribute flags in the order pose, expression, illumination, make-up, occlusion, blur,
then the image path relative to the image folder: 2K + 11 tokens (207 for WFLW's 98 points). Coordinates are taken
as written (WFLW's own lists, as every WFLW paper uses them); ``index_base=1`` subtracts 1 for lists converted from
1-based ``.pts`` files (e.g. the 300W lists of the pfld68 format; datasets/wflw/README.md).
"""

from __future__ import annotations

import os
from pathlib import Path

from awing.data.base import LandmarkDataset, require_path
from awing.data.io import DataError, InvalidItems, parse_numbers
from awing.data.sample import LandmarkRecord, make_record
from awing.landmarks import get_scheme

__all__ = ["WFLW_FLAGS", "LandmarkListDataset", "WFLWDataset", "read_landmark_list"]

#: WFLW attribute flags in file order; each is also a subset name (``subset_indices("pose")``).
WFLW_FLAGS = ("pose", "expression", "illumination", "makeup", "occlusion", "blur")


def _parse_line(
    tokens: list[str], num_points: int, path: Path, number: int, image_root: Path | None, index_base: int
) -> LandmarkRecord:
    expected = 2 * num_points + 4 + len(WFLW_FLAGS) + 1
    if len(tokens) != expected:
        raise DataError(
            f"expected {expected} tokens ({num_points} points x 2 + 4 box + 6 flags + image path), got {len(tokens)}",
            path,
            number,
        )
    values = parse_numbers(tokens[:-1], path, number)
    flags = values[-len(WFLW_FLAGS) :]
    bad = [f"{name}={value:g}" for name, value in zip(WFLW_FLAGS, flags, strict=True) if value not in (0, 1)]
    if bad:
        raise DataError(f"attribute flags must be 0 or 1, got {', '.join(bad)}", path, number)
    flag_dict = {name: int(value) for name, value in zip(WFLW_FLAGS, flags, strict=True)}
    name = tokens[-1]
    return make_record(
        values[: 2 * num_points].reshape(num_points, 2) - index_base,
        num_points=num_points,
        image_path=name if image_root is None else image_root / name,
        file=path,
        line=number,
        box=values[2 * num_points : 2 * num_points + 4] - index_base,
        attributes={"flags": flag_dict, "subsets": tuple(n for n in WFLW_FLAGS if flag_dict[n])},
        check_image=image_root is not None,
    )


def read_landmark_list(
    path: str | os.PathLike,
    num_points: int | None = None,
    image_root: str | os.PathLike | None = None,
    index_base: int = 0,
    skip_invalid: bool = False,
) -> list[LandmarkRecord]:
    """Parse a WFLW-style list -> one :class:`LandmarkRecord` per line (empty lines are ignored).

    Args:
        path: the list file.
        num_points: K; None infers it from the first line's token count (2K + 11).
        image_root: folder the image paths are relative to; None keeps the paths as written and does not check
            that the images exist.
        index_base: subtracted from coordinates and box (1 for lists written from 1-based ``.pts`` files).
        skip_invalid: skip bad lines with one warning instead of raising :class:`DataError` at the first.

    The attributes hold ``flags`` (name -> 0/1) and ``subsets`` (the names of the flags set).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError("landmark list not found", path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DataError("not a text file; expected a WFLW-style landmark list", path) from None
    numbered = [(n, line.split()) for n, line in enumerate(text.splitlines(), 1)]
    numbered = [(n, tokens) for n, tokens in numbered if tokens]
    if not numbered:
        raise DataError("empty landmark list", path)
    if num_points is None:
        first, tokens = numbered[0]
        num_points, odd = divmod(len(tokens) - 11, 2)
        if odd or num_points < 1:
            raise DataError(f"{len(tokens)} tokens do not fit 2K + 11 (K points, box, 6 flags, path)", path, first)
    root = None if image_root is None else Path(image_root)
    invalid = InvalidItems(skip_invalid)
    records = []
    for number, tokens in numbered:
        with invalid:
            records.append(_parse_line(tokens, num_points, path, number, root, index_base))
    invalid.warn(f"lines of {path}", len(numbered))
    return records


class LandmarkListDataset(LandmarkDataset):
    """Faces from a WFLW-style list with any point count (e.g. the 68-point lists of the pfld68 format).

    Args:
        list_path: the list file.
        image_root: folder of the images (None: paths as written, not checked).
        scheme: landmark scheme; None takes the scheme whose point count the first line implies.
        index_base: see :func:`read_landmark_list`.
        skip_invalid: skip bad lines with one warning.
    """

    def __init__(
        self,
        list_path: str | os.PathLike,
        image_root: str | os.PathLike | None = None,
        scheme: str | int | None = None,
        index_base: int = 0,
        skip_invalid: bool = False,
    ) -> None:
        num_points = None if scheme is None else get_scheme(scheme).num_points
        records = read_landmark_list(list_path, num_points, image_root, index_base, skip_invalid)
        if scheme is None:
            if not records:
                raise DataError("no valid line to infer the landmark scheme from", list_path)
            scheme = len(records[0].landmarks_img)
        super().__init__(records, scheme, subset_names=WFLW_FLAGS)


class WFLWDataset(LandmarkListDataset):
    """WFLW (Wu et al., CVPR 2018): 98 points, 7,500 train / 2,500 test faces, six test subsets.

    Layout (datasets/wflw/README.md)::

        root/WFLW_annotations/list_98pt_rect_attr_train_test/list_98pt_rect_attr_{train,test}.txt
        root/WFLW_images/<event folder>/<image>.jpg

    Splits: ``"train"``, ``"test"``. Subsets (flags, methods.md §5.3): pose, expression, illumination, makeup,
    occlusion, blur; ``subset_indices("pose")`` gives the large-pose faces of the split.
    """

    SPLITS = ("train", "test")

    def __init__(self, root: str | os.PathLike, split: str = "train", skip_invalid: bool = False) -> None:
        self.check_split(split)
        root = Path(root)
        name = f"list_98pt_rect_attr_{split}.txt"
        super().__init__(
            require_path(root / "WFLW_annotations" / "list_98pt_rect_attr_train_test" / name, "wflw"),
            image_root=require_path(root / "WFLW_images", "wflw", folder=True),
            scheme="98",
            skip_invalid=skip_invalid,
        )
