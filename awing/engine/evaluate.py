"""Evaluation: predict landmarks in original-image pixels, score NME / FR / AUC overall and per subset.

The path is inference's (architecture.md, Data flow): evaluation crop (no augmentation) -> model -> last stack's
heatmaps without the boundary channel -> optional flip test -> ``HeatmapCodec.decode`` -> ``to_crop`` -> inverse
of the sample's image -> crop matrix -> image pixels. Metrics follow methods.md §5 (``awing.metrics``): per-image
NME over the visible points, FR@t = fraction with NME > t, AUC@t = Simpson integral of the CED over [0, t] / t.

Report keys name the normalisation, e.g. ``{"norm": "inter_ocular", "nme_inter_ocular": 0.0436,
"nme_inter_pupil": 0.0310, "nme_box": 0.0221, "fr@0.10": 0.0284, "auc@0.10": 0.5719, "subsets": {...}}``. FR and
AUC use the primary ``norm`` (default per data set: :data:`DEFAULT_NORMS`). A secondary normalisation is reported
over the faces where it is defined (its reference points visible), with ``num_faces_<norm>`` when that is fewer
than all. Values are fractions here; ``awing eval`` writes them in percent (:func:`percent_report`).

Flip test: the crop is also run mirrored (``x' = S - 1 - x``); the mirrored heatmaps are flipped back and their
channels permuted by the scheme's ``flip_index`` (:func:`awing.codecs.flip_heatmaps_back`), then averaged with the
plain ones before decoding. Crops go through :func:`awing.inference.predict_crops`, the routine of ``awing predict``.
"""

from __future__ import annotations

import dataclasses
import inspect
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from awing.codecs import HeatmapCodec
from awing.config import ConfigError, DataConfig, TrainConfig
from awing.data import DATASETS, LandmarkDataset, LandmarkTrainingSet, build_dataset
from awing.data.training import worker_context
from awing.engine.loggers import strict_json
from awing.inference import InferenceSettings, predict_crops, resolve_device
from awing.landmarks import LandmarkScheme, get_scheme
from awing.metrics import NORMS, auc, ced_curve, failure_rate, nme
from awing.models.weights import model_from_state_dict, read_metadata, read_weights
from awing.viz import save_ced_png

__all__ = [
    "DEFAULT_NORMS",
    "Evaluation",
    "default_norm",
    "evaluate_model",
    "landmark_report",
    "open_dataset",
    "percent_report",
    "predict_landmarks",
    "run_evaluation",
]

#: Primary normalisation per data set (methods.md §5.1: AFLW-family papers use the box size sqrt(w h); COFW's AWing
#: number is inter-pupil); every other data set uses the inter-ocular distance.
DEFAULT_NORMS = {"aflw": "box", "aflw68": "box", "aflw68-3d": "box", "aflw2000-3d": "box", "cofw": "inter_pupil"}


def default_norm(dataset: str) -> str:
    """The primary NME normalisation of data set ``dataset`` (:data:`DEFAULT_NORMS`, else ``"inter_ocular"``)."""
    return DEFAULT_NORMS.get(dataset.strip().lower(), "inter_ocular")


def open_dataset(cfg: DataConfig, split: str) -> LandmarkDataset:
    """The faces of ``split`` of the data set ``cfg.name`` at ``cfg.root`` (a relative root is relative to the CWD).

    Data sets with standard splits (wflw, 300w, cofw, aflw, aflw2000-3d) take the split by name. The generic formats
    (pts, coco, spiga, list) have none: there ``split`` names a folder or file under ``cfg.root`` (e.g.
    ``root=data/mine``, ``train_split=train``, ``val_split=val``). ``cfg.scheme`` selects AFLW's 21 or 19 points and
    AFLW2000-3D's 68 (re-annotated) or 21 points. ``cfg.max_samples > 0`` keeps the first N faces.
    """
    key = cfg.name.strip().lower()
    if key not in DATASETS:
        raise ConfigError(f"unknown data.name {cfg.name!r}; valid names: {', '.join(DATASETS)}")
    scheme = get_scheme(cfg.scheme)
    params = inspect.signature(DATASETS[key]).parameters
    kwargs: dict[str, Any] = {}
    if "scheme" in params:
        kwargs["scheme"] = scheme.name
    if cfg.skip_invalid:
        if "skip_invalid" not in params:
            raise ConfigError(f"data.skip_invalid=true: data set {key!r} has no invalid-annotation skipping")
        kwargs["skip_invalid"] = True
    if key == "aflw2000-3d":
        if scheme.name not in ("68", "21"):
            raise ConfigError(f"aflw2000-3d provides the 68- and 21-point schemes, got data.scheme={cfg.scheme!r}")
        kwargs["points"] = "21" if scheme.name == "21" else "reannotated"
    if DATASETS[key].SPLITS:
        dataset = build_dataset(key, cfg.root, split=split, **kwargs)
    else:
        dataset = build_dataset(key, Path(cfg.root) / split, **kwargs)
    if get_scheme(dataset.scheme).num_points != scheme.num_points:
        raise ConfigError(
            f"data.scheme={cfg.scheme!r} has {scheme.num_points} points but {key} {split!r} has "
            f"{get_scheme(dataset.scheme).num_points}"
        )
    if cfg.max_samples:
        dataset.records = dataset.records[: cfg.max_samples]  # a prefix keeps every record's index valid
    return dataset


def predict_landmarks(
    model: nn.Module,
    loader: DataLoader,
    codec: HeatmapCodec,
    scheme: LandmarkScheme,
    *,
    device: torch.device,
    flip: bool = False,
    amp: bool = False,
    progress: bool | None = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Landmarks in original-image pixels for every item of ``loader`` (evaluation items of a LandmarkTrainingSet),
    each batch through :func:`awing.inference.predict_crops` (prediction's routine).

    Returns:
        ``(landmarks_img, indices)``: float32 ``(N, K, 2)`` and int64 ``(N,)`` dataset indices, in loader order.
    """
    was_training = model.training
    model.eval()
    out, indices = [], []
    try:
        for batch in tqdm(
            loader, desc="eval", leave=False, disable=None if progress is None else not progress, file=sys.stderr
        ):
            landmarks, _ = predict_crops(
                model, batch["image"], batch["matrix"].numpy(), codec, scheme, device=device, flip=flip, amp=amp
            )
            out.append(landmarks)
            indices.append(batch["index"].numpy())
    finally:
        model.train(was_training)
    if not out:
        raise ValueError("the evaluation set is empty")
    return np.concatenate(out), np.concatenate(indices).astype(np.int64)


def _threshold_key(kind: str, threshold: float) -> str:
    return f"{kind}@{threshold:.2f}"


def _norms_of(scheme: LandmarkScheme) -> list[str]:
    return [n for n in NORMS if n == "box" or n in scheme.norm_groups]


def _scores(
    pred: np.ndarray, gt: np.ndarray, visible: np.ndarray, scheme: LandmarkScheme, norm: str, threshold: float
) -> tuple[dict[str, Any], np.ndarray]:
    """Metrics of one face set and the per-face NME of the primary ``norm``."""
    nmes = nme(pred, gt, norm, scheme, visible)
    scores: dict[str, Any] = {
        "num_faces": len(nmes),
        f"nme_{norm}": float(nmes.mean()),
        _threshold_key("fr", threshold): failure_rate(nmes, threshold),
        _threshold_key("auc", threshold): auc(nmes, threshold),
    }
    for other in _norms_of(scheme):
        if other == norm:
            continue
        if other == "box":
            defined = visible.sum(axis=1) >= 2
        else:
            defined = visible[:, [*scheme.norm_groups[other][0], *scheme.norm_groups[other][1]]].all(axis=1)
        if not defined.any():
            continue
        try:
            values = nme(pred[defined], gt[defined], other, scheme, visible[defined])
        except ValueError:  # a degenerate reference (zero box or coincident eyes): not reported for this norm
            continue
        scores[f"nme_{other}"] = float(values.mean())
        if defined.sum() < len(nmes):
            scores[f"num_faces_{other}"] = int(defined.sum())
    return scores, nmes


def landmark_report(
    pred: np.ndarray,
    gt: np.ndarray,
    visible: np.ndarray,
    scheme: str | int | LandmarkScheme,
    *,
    norm: str,
    threshold: float = 0.10,
    subsets: Mapping[str, np.ndarray] | None = None,
) -> tuple[dict[str, Any], np.ndarray]:
    """NME (every normalisation the scheme has), FR@t and AUC@t over all faces and per subset (methods.md §5).

    Args:
        pred, gt: ``(N, K, 2)`` landmarks in one frame (image pixels).
        visible: ``(N, K)`` bool; errors average over visible points only.
        scheme: landmark scheme (its normalisation groups).
        norm: the primary normalisation ("inter_ocular", "inter_pupil" or "box"): FR, AUC and the CED use it.
        threshold: FR / AUC threshold t.
        subsets: name -> int indices into the N faces.

    Returns:
        ``(report, nmes)``: the report dict (module docstring) and the per-face NME ``(N,)`` of ``norm``.
    """
    scheme = get_scheme(scheme) if not isinstance(scheme, LandmarkScheme) else scheme
    if norm not in _norms_of(scheme):
        raise ValueError(f"norm must be one of {_norms_of(scheme)} for scheme {scheme.name}, got {norm!r}")
    report, nmes = _scores(pred, gt, visible, scheme, norm, threshold)
    report = {"norm": norm, **report, "subsets": {}}
    for name, index in (subsets or {}).items():
        index = np.asarray(index, dtype=np.int64)
        if index.size == 0:
            report["subsets"][name] = {"num_faces": 0}
            continue
        report["subsets"][name] = _scores(pred[index], gt[index], visible[index], scheme, norm, threshold)[0]
    return report, nmes


@dataclass
class Evaluation:
    """The outcome of :func:`evaluate_model`.

    Attributes:
        landmarks_img: ``(N, K, 2)`` predictions in image pixels, in dataset order.
        nmes: ``(N,)`` per-face NME of ``report["norm"]``.
        subsets: subset name -> face indices.
        report: see :func:`landmark_report` (plus data set, split, scheme and flip-test entries).
    """

    landmarks_img: np.ndarray
    nmes: np.ndarray
    subsets: dict[str, np.ndarray]
    report: dict[str, Any]

    def ced_curves(self, threshold: float) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Label -> ``(x, y)`` CED of every face (``"all"``) and of each non-empty subset."""
        curves = {"all": ced_curve(self.nmes, threshold)}
        for name, index in self.subsets.items():
            if len(index):
                curves[name] = ced_curve(self.nmes[index], threshold)
        return curves


def evaluate_model(
    model: nn.Module,
    dataset: LandmarkDataset,
    data_cfg: DataConfig,
    *,
    device: torch.device,
    norm: str | None = None,
    threshold: float = 0.10,
    flip: bool = False,
    batch_size: int | None = None,
    amp: bool = False,
    progress: bool | None = False,
) -> Evaluation:
    """Predict every face of ``dataset`` with the evaluation crop of ``data_cfg`` and score it.

    Args:
        model: a landmark network returning a list of per-stack ``B x (K [+1]) x H x W`` heatmaps.
        dataset: the faces (ground truth from ``dataset.records``, in image pixels).
        data_cfg: input size, heatmap size, codec, crop scale, workers and batch size.
        device: where the model runs.
        norm: primary normalisation; None = :func:`default_norm` of ``data_cfg.name``.
        threshold: FR / AUC threshold.
        flip: average with the mirrored crop's prediction (module docstring).
        batch_size: faces per forward pass (default ``data_cfg.batch_size``).
        amp: float16 autocast (CUDA).
        progress: tqdm bar on stderr (None: only on a terminal).
    """
    norm = default_norm(data_cfg.name) if norm is None else norm
    data = LandmarkTrainingSet.from_config(dataset, data_cfg, train=False)
    loader = DataLoader(
        data,
        batch_size=batch_size or data_cfg.batch_size,
        shuffle=False,
        num_workers=data_cfg.num_workers,
        multiprocessing_context=worker_context(data_cfg.num_workers),
        pin_memory=device.type == "cuda",
    )
    pred, order = predict_landmarks(
        model, loader, data.codec, data.scheme, device=device, flip=flip, amp=amp, progress=progress
    )
    landmarks = np.empty_like(pred)
    landmarks[order] = pred
    records = dataset.records
    gt = np.stack([r.landmarks_img for r in records]).astype(np.float32)
    visible = np.stack([r.visible for r in records]).astype(bool)
    subsets = {name: dataset.subset_indices(name) for name in dataset.subset_names}
    report, nmes = landmark_report(landmarks, gt, visible, data.scheme, norm=norm, threshold=threshold, subsets=subsets)
    header = {"dataset": data_cfg.name, "scheme": data.scheme.name, "flip_test": flip}
    return Evaluation(landmarks, nmes, subsets, {**header, **report})


def percent_report(report: dict[str, Any]) -> dict[str, Any]:
    """``report`` (fractions, :func:`landmark_report`) as ``awing eval`` writes it, in the README's units: NME, FR and
    AUC in percent, thresholds in percent of the normaliser in the key (``fr@0.10`` -> ``fr@10%``), and ``"units"``
    saying so. Subsets likewise."""

    def convert(scores: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in scores.items():
            if key == "subsets":
                out[key] = {name: convert(sub) for name, sub in value.items()}
            elif key.startswith(("nme_", "fr@", "auc@")):
                name, _, threshold = key.partition("@")
                key = f"{name}@{float(threshold) * 100:g}%" if threshold else key
                out[key] = 100.0 * value
            else:
                out[key] = value
        return out

    return {**convert(report), "units": "nme_*, fr@ and auc@ in %; thresholds in % of the normaliser"}


def run_evaluation(
    cfg: TrainConfig,
    weights: str | Path,
    *,
    split: str | None = None,
    norm: str | None = None,
    threshold: float = 0.10,
    flip: bool = False,
    out_dir: str | Path | None = None,
    progress: bool | None = None,
) -> tuple[dict[str, Any], Path]:
    """``awing eval``: load ``weights``, evaluate split ``split`` (default ``cfg.data.val_split``), write
    ``report.json`` and ``ced.png`` (awing.viz) to ``out_dir`` (default ``<weights folder>/eval_<data>_<split>``).

    The crop size comes from the weights (their ``input_size``; heatmaps at a quarter of it), and so do codec,
    sigma and crop scale when the weights store their inference settings (:class:`awing.inference.InferenceSettings`,
    written by the trainer): ``awing eval`` then crops and decodes exactly as ``awing predict`` does with the same
    weights and box, in float32 as prediction does (no autocast). The data set comes from ``cfg``. Returns the
    report and the output folder.
    """
    if not 0 < threshold <= 1 or abs(round(threshold * 1e4) - threshold * 1e4) > 1e-6:
        raise ConfigError(f"threshold must be in (0, 1] and a multiple of 0.0001 (the CED step), got {threshold}")
    split = cfg.data.val_split if split is None else split
    device = resolve_device(cfg.run.device, "run.device")
    state_dict, info = read_weights(weights, input_size=cfg.data.input_size)
    metadata = read_metadata(weights)
    scheme = get_scheme(cfg.data.scheme)
    if info.config.num_landmarks != scheme.num_points:
        raise ConfigError(
            f"weights {weights} predict {info.config.num_landmarks} points but data.scheme={cfg.data.scheme!r} has "
            f"{scheme.num_points}"
        )
    data_cfg = cfg.data
    if (data_cfg.input_size, data_cfg.heatmap_size) != (info.input_size, info.config.heatmap_size):
        print(
            f"awing eval: using the weights' input size {info.input_size} (heatmaps {info.config.heatmap_size}) "
            f"instead of data.input_size={data_cfg.input_size}",
            file=sys.stderr,
        )
        data_cfg = dataclasses.replace(data_cfg, input_size=info.input_size, heatmap_size=info.config.heatmap_size)
    if "data" in metadata:  # the weights say how their crops and heatmaps were made: predict uses the same
        stored = InferenceSettings.from_metadata(metadata, info.config)
        wanted = {"crop_scale": stored.crop_scale, "codec": stored.codec, "sigma": stored.sigma}
        differs = {k: v for k, v in wanted.items() if getattr(data_cfg, k) != v}
        if differs:
            print(f"awing eval: using the weights' inference settings {differs} over the config's", file=sys.stderr)
            data_cfg = dataclasses.replace(data_cfg, **differs)
    model = model_from_state_dict(state_dict, info.config).to(device)
    dataset = open_dataset(data_cfg, split)
    evaluation = evaluate_model(
        model, dataset, data_cfg, device=device, norm=norm, threshold=threshold, flip=flip, progress=progress
    )
    report = {"dataset": data_cfg.name, "split": split, "weights": str(weights), **percent_report(evaluation.report)}
    out = Path(weights).parent / f"eval_{data_cfg.name}_{split}" if out_dir is None else Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(strict_json(report, indent=2) + "\n", encoding="utf-8")
    title = f"{data_cfg.name} {split}: CED of NME ({report['norm']})"
    save_ced_png(out / "ced.png", evaluation.ced_curves(threshold), title=title)
    return report, out
