"""Landmark schemes: point names, flip permutation, boundary curves and NME normalisation groups.

One :class:`LandmarkScheme` instance per scheme: 68 (300W / iBUG), 98 (WFLW), 29 (COFW), 21 and 19 (AFLW), 5.
"Left" and "right" always mean the image's left and right (the subject's right eye is the image-left eye).

Sources: flip pairs of the 68/98/29 schemes and the boundary curves of the 68/98 schemes are those of the
official AWing code (methods.md §3.7, §4); the AFLW order and pairs are those of ``shared/data/README.md``. The COFW
point meanings were read off an overlay of a COFW sample; its curves and the AFLW curves are awing's own choice
(the official file's 29-point curves were not available).

>>> scheme = get_scheme("wflw")
>>> scheme.num_points, scheme.flip_index[60], scheme.norm_groups["inter_ocular"]
(98, 72, ((60,), (72,)))
"""

from __future__ import annotations

from dataclasses import dataclass, field

Pairs = tuple[tuple[int, int], ...]
IndexGroups = tuple[tuple[int, ...], tuple[int, ...]]


@dataclass(frozen=True)
class LandmarkScheme:
    """A landmark layout.

    Attributes:
        name: canonical name ("68", "98", "29", "21", "19" or "5").
        num_points: K.
        point_names: K names; a "left_*" point's flip partner is the matching "right_*" point.
        flip_pairs: the swapped pairs of a horizontal flip; other points map to themselves.
        flip_index: the full flip permutation (length K, an involution): after mirroring x, point i of the
            flipped face is point ``flip_index[i]`` of the original.
        curves: boundary curves (open polylines through point indices) for the boundary heatmap (methods.md §3.7).
        norm_groups: NME normalisations: name -> (left group, right group); the distance is taken between the
            means of the two groups' points ("inter_ocular": outer eye corners; "inter_pupil": eye centres).
        description: where the layout comes from.
    """

    name: str
    num_points: int
    point_names: tuple[str, ...]
    flip_pairs: Pairs
    curves: tuple[tuple[int, ...], ...]
    norm_groups: dict[str, IndexGroups]
    description: str = ""
    flip_index: tuple[int, ...] = field(init=False)

    def __post_init__(self) -> None:
        k = self.num_points
        if len(self.point_names) != k:
            raise ValueError(f"scheme {self.name}: {len(self.point_names)} point names for {k} points")
        index = list(range(k))
        for a, b in self.flip_pairs:
            if index[a] != a or index[b] != b or a == b:
                raise ValueError(f"scheme {self.name}: flip pair ({a}, {b}) overlaps another pair")
            index[a], index[b] = b, a
        object.__setattr__(self, "flip_index", tuple(index))
        used = [i for curve in self.curves for i in curve] + [
            i for groups in self.norm_groups.values() for group in groups for i in group
        ]
        if any(not 0 <= i < k for i in used):
            raise ValueError(f"scheme {self.name}: a curve or normalisation index is outside 0..{k - 1}")


def _chain(start: int, stop: int) -> tuple[int, ...]:
    """Indices start..stop inclusive."""
    return tuple(range(start, stop + 1))


def _mirror_names(num_points: int, pairs: Pairs, named: dict[int, str]) -> tuple[str, ...]:
    """Complete the names: each named "left_*" point gives its flip partner the "right_*" name."""
    names = dict(named)
    for a, b in pairs:
        left, right = (a, b) if a in named else (b, a)
        names[right] = named[left].replace("left_", "right_", 1)
    missing = sorted(set(range(num_points)) - set(names))
    if missing:
        raise ValueError(f"points without a name: {missing}")
    return tuple(names[i] for i in range(num_points))


def _scheme_68() -> LandmarkScheme:
    pairs = (
        (0, 16), (1, 15), (2, 14), (3, 13), (4, 12), (5, 11), (6, 10), (7, 9),
        (17, 26), (18, 25), (19, 24), (20, 23), (21, 22),
        (36, 45), (37, 44), (38, 43), (39, 42), (41, 46), (40, 47),
        (31, 35), (32, 34),
        (50, 52), (49, 53), (48, 54), (61, 63), (60, 64), (67, 65), (59, 55), (58, 56),
    )  # fmt: skip
    named = {i: f"left_cheek_{i}" for i in range(8)}
    named |= {8: "chin"} | {17 + i: f"left_brow_{i}" for i in range(5)}
    named |= {27 + i: f"nose_bridge_{i}" for i in range(4)}
    named |= {31: "left_nose_wing_0", 32: "left_nose_wing_1", 33: "nose_bottom_centre"}
    eye = ("outer_corner", "upper_outer", "upper_inner", "inner_corner", "lower_inner", "lower_outer")
    named |= {36 + i: f"left_eye_{part}" for i, part in enumerate(eye)}
    named |= {48: "left_mouth_corner", 49: "left_upper_lip_outer_0", 50: "left_upper_lip_outer_1"}
    named |= {51: "upper_lip_outer_centre", 57: "lower_lip_outer_centre"}
    named |= {59: "left_lower_lip_outer_0", 58: "left_lower_lip_outer_1"}
    named |= {60: "left_mouth_inner_corner", 61: "left_upper_lip_inner", 62: "upper_lip_inner_centre"}
    named |= {67: "left_lower_lip_inner", 66: "lower_lip_inner_centre"}
    curves = (
        _chain(0, 16), _chain(17, 21), _chain(22, 26),
        _chain(36, 39), (36, 41, 40, 39), _chain(42, 45), (42, 47, 46, 45),
        _chain(27, 30), _chain(31, 35),
        _chain(48, 54), _chain(60, 64), (48, 59, 58, 57, 56, 55, 54), (60, 67, 66, 65, 64),
    )  # fmt: skip
    return LandmarkScheme(
        name="68",
        num_points=68,
        point_names=_mirror_names(68, pairs, named),
        flip_pairs=pairs,
        curves=curves,
        norm_groups={"inter_ocular": ((36,), (45,)), "inter_pupil": (_chain(36, 41), _chain(42, 47))},
        description="300W / iBUG 68 points",
    )


def _scheme_98() -> LandmarkScheme:
    pairs = tuple((i, 32 - i) for i in range(16)) + (
        (33, 46), (34, 45), (35, 44), (36, 43), (37, 42), (38, 50), (39, 49), (40, 48), (41, 47),
        (60, 72), (61, 71), (62, 70), (63, 69), (64, 68), (65, 75), (66, 74), (67, 73),
        (96, 97), (55, 59), (56, 58),
        (76, 82), (77, 81), (78, 80), (88, 92), (89, 91), (95, 93), (87, 83), (86, 84),
    )  # fmt: skip
    named = {i: f"left_cheek_{i}" for i in range(16)} | {16: "chin"}
    named |= {33 + i: f"left_brow_upper_{i}" for i in range(5)}
    named |= {38 + i: f"left_brow_lower_{i}" for i in range(4)}
    named |= {51 + i: f"nose_bridge_{i}" for i in range(4)}
    named |= {55: "left_nose_wing_0", 56: "left_nose_wing_1", 57: "nose_bottom_centre"}
    named |= {60 + i: f"left_eye_{i}" for i in range(8)} | {96: "left_pupil"}
    named |= {76: "left_mouth_corner", 77: "left_upper_lip_outer_0", 78: "left_upper_lip_outer_1"}
    named |= {79: "upper_lip_outer_centre", 87: "left_lower_lip_outer_0", 86: "left_lower_lip_outer_1"}
    named |= {85: "lower_lip_outer_centre", 88: "left_mouth_inner_corner", 89: "left_upper_lip_inner"}
    named |= {90: "upper_lip_inner_centre", 95: "left_lower_lip_inner", 94: "lower_lip_inner_centre"}
    curves = (
        _chain(0, 32), _chain(33, 37), _chain(42, 46),
        _chain(60, 64), (60, 67, 66, 65, 64), _chain(68, 72), (68, 75, 74, 73, 72),
        _chain(51, 54), _chain(55, 59),
        _chain(76, 82), _chain(88, 92), (76, 87, 86, 85, 84, 83, 82), (88, 95, 94, 93, 92),
    )  # fmt: skip
    return LandmarkScheme(
        name="98",
        num_points=98,
        point_names=_mirror_names(98, pairs, named),
        flip_pairs=pairs,
        curves=curves,
        norm_groups={"inter_ocular": ((60,), (72,)), "inter_pupil": ((96,), (97,))},
        description="WFLW 98 points",
    )


def _scheme_29() -> LandmarkScheme:
    pairs = ((0, 1), (4, 6), (2, 3), (5, 7), (8, 9), (10, 11), (12, 14), (16, 17), (13, 15), (18, 19), (22, 23))
    named = {
        0: "left_brow_outer", 2: "left_brow_inner", 4: "left_brow_top", 5: "left_brow_bottom",
        8: "left_eye_outer_corner", 10: "left_eye_inner_corner", 12: "left_eye_top", 13: "left_eye_bottom",
        16: "left_pupil", 18: "left_nose_wing", 20: "nose_tip", 21: "nose_bottom", 22: "left_mouth_corner",
        24: "upper_lip_top", 25: "upper_lip_bottom", 26: "lower_lip_top", 27: "lower_lip_bottom", 28: "chin",
    }  # fmt: skip
    curves = (
        (0, 4, 2), (3, 6, 1), (8, 12, 10), (8, 13, 10), (11, 14, 9), (11, 15, 9),
        (18, 21, 19), (22, 24, 23), (22, 25, 23), (22, 26, 23), (22, 27, 23),
    )  # fmt: skip
    return LandmarkScheme(
        name="29",
        num_points=29,
        point_names=_mirror_names(29, pairs, named),
        flip_pairs=pairs,
        curves=curves,
        norm_groups={"inter_ocular": ((8,), (9,)), "inter_pupil": ((16,), (17,))},
        description="COFW 29 points",
    )


_AFLW21_NAMED = {
    0: "left_brow_outer", 1: "left_brow_centre", 2: "left_brow_inner",
    6: "left_eye_outer_corner", 7: "left_eye_centre", 8: "left_eye_inner_corner",
    12: "left_ear", 13: "left_nose_wing", 14: "nose_tip", 17: "left_mouth_corner", 18: "mouth_centre", 20: "chin",
}  # fmt: skip
_AFLW21_PAIRS = ((0, 5), (1, 4), (2, 3), (6, 11), (7, 10), (8, 9), (12, 16), (13, 15), (17, 19))
_AFLW21_CURVES = ((0, 1, 2), (3, 4, 5), (6, 7, 8), (9, 10, 11), (13, 14, 15), (17, 18, 19))

#: AFLW-21 indices kept by the 19-point scheme (the two ears, 12 and 16, are dropped).
AFLW19_FROM_21 = tuple(i for i in range(21) if i not in (12, 16))


def _scheme_21() -> LandmarkScheme:
    return LandmarkScheme(
        name="21",
        num_points=21,
        point_names=_mirror_names(21, _AFLW21_PAIRS, _AFLW21_NAMED),
        flip_pairs=_AFLW21_PAIRS,
        curves=_AFLW21_CURVES,
        norm_groups={"inter_ocular": ((6,), (11,)), "inter_pupil": ((7,), (10,))},
        description="AFLW 21 points",
    )


def _scheme_19() -> LandmarkScheme:
    new = {old: i for i, old in enumerate(AFLW19_FROM_21)}
    full = _scheme_21()
    return LandmarkScheme(
        name="19",
        num_points=19,
        point_names=tuple(full.point_names[i] for i in AFLW19_FROM_21),
        flip_pairs=tuple((new[a], new[b]) for a, b in _AFLW21_PAIRS if a in new and b in new),
        curves=tuple(tuple(new[i] for i in curve) for curve in _AFLW21_CURVES),
        norm_groups={"inter_ocular": ((new[6],), (new[11],)), "inter_pupil": ((new[7],), (new[10],))},
        description="AFLW 19 points (AFLW-21 without the ears)",
    )


def _scheme_5() -> LandmarkScheme:
    named = {0: "left_eye_centre", 2: "nose_tip", 3: "left_mouth_corner"}
    pairs = ((0, 1), (3, 4))
    return LandmarkScheme(
        name="5",
        num_points=5,
        point_names=_mirror_names(5, pairs, named),
        flip_pairs=pairs,
        curves=(),
        norm_groups={"inter_ocular": ((0,), (1,)), "inter_pupil": ((0,), (1,))},
        description="5 points: eye centres, nose tip, mouth corners (detector landmarks)",
    )


SCHEMES: dict[str, LandmarkScheme] = {
    s.name: s for s in (_scheme_68(), _scheme_98(), _scheme_29(), _scheme_21(), _scheme_19(), _scheme_5())
}

ALIASES: dict[str, str] = {
    "300w": "68", "ibug": "68", "ibug68": "68", "aflw2000": "68", "aflw2000-3d": "68",
    "wflw": "98", "cofw": "29", "aflw": "21", "aflw21": "21", "aflw19": "19", "five": "5",
}  # fmt: skip


def get_scheme(name: str | int | LandmarkScheme) -> LandmarkScheme:
    """Look a scheme up by name, alias or point count (``"wflw"``, ``"98"`` or ``98``)."""
    if isinstance(name, LandmarkScheme):
        return name
    key = str(name).strip().lower()
    key = ALIASES.get(key, key)
    if key not in SCHEMES:
        valid = ", ".join(sorted(SCHEMES, key=int)) + "; aliases: " + ", ".join(sorted(ALIASES))
        raise ValueError(f"unknown landmark scheme {name!r}; valid names: {valid}")
    return SCHEMES[key]
