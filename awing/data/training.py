"""The torch Dataset of training (and validation) samples: crop, augment, targets, tensors.

Each item is a dict of tensors (``torch.utils.data.default_collate`` batches them; no custom collate is needed):

- ``image``: (S, S, 3) uint8 RGB crop, channels last as OpenCV makes it; :func:`awing.inference.model_input` turns a
  batch into the network's float32 (B, 3, S, S) input in [0, 1] on the device (no mean/std normalisation,
  methods.md §3.1);
- ``boundary``: (H, W) float32 boundary heatmap (only with ``boundary=True``);
- ``point_weight``: (K,) float32, 1 for visible points inside the crop, else 0;
- ``landmarks_crop``: (K, 2) float32 crop pixels (every point, flip-permuted with the image);
- ``visible``: (K,) bool, permuted likewise;
- ``matrix``: (2, 3) float64 image -> crop matrix (predictions map back by its inverse);
- ``index``: the dataset index (an int; a (B,) int64 tensor after collation).

The landmark heatmaps are not in the item: :meth:`LandmarkTrainingSet.targets` encodes them for a whole batch on
the device from ``landmarks_crop`` and ``point_weight`` (awing.data.targets) and appends the boundary, giving the
float32 (B, K + 1, H, W) target of the loss. An item is about 214 KB at 98 points, 256 / 64 (it was 2.4 MB with
99 float32 maps and a float image, and a DataLoader worker spent as long copying that into shared memory as
building it).

Seeding. With augmentation, sample ``i`` of epoch ``e`` draws everything from ``sample_rng(seed, e, i)``, so it
does not depend on the worker that builds it, the worker count or the order. :meth:`LandmarkTrainingSet.set_epoch`
writes the epoch into a shared-memory tensor, which workers (persistent or not) read: call it before iterating the
loader for that epoch. DataLoader workers already get distinct python/numpy/torch seeds from PyTorch; pass
:func:`seed_worker` as ``worker_init_fn`` to also seed OpenCV's generator per worker and keep OpenCV to one thread per
worker (the workers are the parallelism).

Cost (scripts/bench_data.py, 98 points at 256 / 64): about 2.1 ms of one core per item, 2.6 ms in a DataLoader
worker with the collation into shared memory (about 390 items/s per worker).

Typical use (``cfg`` a :class:`awing.config.TrainConfig`)::

    train = LandmarkTrainingSet.from_config(dataset, cfg.data, train=True, seed=cfg.run.seed)
    loader = DataLoader(train, batch_size=16, shuffle=True, num_workers=8, worker_init_fn=seed_worker,
                        persistent_workers=True)
    for epoch in range(cfg.schedule.epochs):
        train.set_epoch(epoch)
        for batch in loader:
            images = model_input(batch["image"], device)
            target = train.targets(batch, device)
            ...
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Protocol

import cv2
import numpy as np
import torch

from awing.codecs import HeatmapCodec
from awing.config import AugmentConfig, DataConfig
from awing.data.augment import augmenter_from, sample_rng, warp_face
from awing.data.io import DataError
from awing.data.sample import FaceSample
from awing.data.targets import face_targets, heatmap_targets
from awing.landmarks import LandmarkScheme, get_scheme

__all__ = ["EpochSampler", "LandmarkTrainingSet", "seed_worker", "training_loader"]


class FaceDataset(Protocol):
    """What :class:`LandmarkTrainingSet` wraps: ``len()`` and ``ds[i] -> FaceSample`` (any awing.data dataset)."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> FaceSample: ...


def worker_context(num_workers: int) -> str | None:
    """DataLoader ``multiprocessing_context``: ``"spawn"`` when there are workers.

    A forked worker inherits OpenCV's thread pool without its threads and can hang in its first OpenCV call
    (seen in ``cv2.setNumThreads``); spawned workers start clean. Datasets must therefore be picklable.
    """
    return "spawn" if num_workers > 0 else None


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: one OpenCV thread per worker and OpenCV's generator seeded per worker.

    The seed is ``torch.initial_seed()`` of the worker (PyTorch's base seed + worker id), which also seeds python
    ``random``, numpy's global generator and torch there. Augmentation itself does not use these global generators
    (see the module docstring); this keeps any other random use in a worker distinct between workers.
    """
    cv2.setNumThreads(1)
    cv2.setRNGSeed(torch.initial_seed() % 2**31)


class EpochSampler(torch.utils.data.Sampler[int]):
    """A shuffled order of ``range(size)`` that is a function of ``(seed, epoch)`` only.

    The order of epoch ``e`` is ``torch.randperm`` under a generator seeded from ``(seed, e)``: it does not depend
    on what ran before (a DataLoader's own generator is also drawn from for its workers' seeds, once per
    iterator, so a continued loader and a rebuilt one would otherwise shuffle differently). ``start`` skips the
    first ``start`` indices of the epoch (a run resumed mid-epoch continues where it stopped).

    >>> sampler = EpochSampler(5, seed=0)
    >>> sampler.set_epoch(3)
    >>> order = list(sampler)
    >>> sampler.set_epoch(3, start=2)
    >>> list(sampler) == order[2:] and sorted(order) == [0, 1, 2, 3, 4]
    True
    """

    def __init__(self, size: int, seed: int) -> None:
        self.size, self.seed = int(size), int(seed)
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        if not 0 <= start <= self.size:
            raise ValueError(f"start must be in [0, {self.size}], got {start}")
        self.epoch, self.start = int(epoch), int(start)

    def __iter__(self):
        seed = int(np.random.SeedSequence([self.seed, self.epoch]).generate_state(1, np.uint64)[0]) >> 1
        order = torch.randperm(self.size, generator=torch.Generator().manual_seed(seed))
        return iter(order[self.start :].tolist())

    def __len__(self) -> int:
        return self.size - self.start


def training_loader(
    data: torch.utils.data.Dataset,
    batch_size: int,
    num_workers: int,
    device: torch.device,
    *,
    seed: int = 0,
    sampler: torch.utils.data.Sampler | None = None,
    collate_fn: Any = None,
) -> tuple[torch.utils.data.DataLoader, Any]:
    """The training DataLoader of the landmark and detector trainers, and its sampler.

    Shuffled by an :class:`EpochSampler` of ``seed`` (or driven by ``sampler``, e.g. a ``DistributedSampler``),
    full batches only, spawned persistent workers (:func:`worker_context`) seeded by :func:`seed_worker`, pinned
    memory on CUDA. Call ``sampler.set_epoch(epoch)`` before each epoch. The workers' base seed comes from a
    generator seeded with ``seed``, drawn once per iterator: with persistent workers, once per run.
    """
    sampler = EpochSampler(len(data), seed) if sampler is None else sampler
    loader = torch.utils.data.DataLoader(
        data,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        multiprocessing_context=worker_context(num_workers),
        collate_fn=collate_fn,
        worker_init_fn=seed_worker,
        generator=torch.Generator().manual_seed(seed),
        drop_last=True,
        pin_memory=device.type == "cuda",
        persistent_workers=num_workers > 0,
    )
    return loader, sampler


class LandmarkTrainingSet(torch.utils.data.Dataset):
    """Faces of ``dataset`` as training samples (see the module docstring for the item layout).

    Args:
        dataset: any ``len()`` / ``ds[i] -> FaceSample`` dataset.
        scheme: landmark scheme; None takes ``dataset.scheme``.
        input_size: crop side S.
        heatmap_size: heatmap side H (S must be a multiple of it).
        sigma: heatmap Gaussian std in heatmap pixels (``"subpixel"`` codec; ``"awing_official"`` has its own).
        codec_mode: ``"subpixel"`` or ``"awing_official"`` (:class:`awing.codecs.HeatmapCodec`).
        crop_scale: crop side relative to the face box's longer side.
        augment: an :class:`awing.config.AugmentConfig`, a mapping of its fields, or None (evaluation: crop only).
        boundary: append the boundary heatmap channel.
        seed: base seed of the augmentation.
    """

    def __init__(
        self,
        dataset: FaceDataset,
        scheme: LandmarkScheme | str | int | None = None,
        input_size: int = 256,
        heatmap_size: int = 64,
        sigma: float = 1.5,
        codec_mode: str = "subpixel",
        crop_scale: float = 1.25,
        augment: AugmentConfig | Mapping[str, float] | None = None,
        boundary: bool = True,
        seed: int = 0,
    ) -> None:
        own_scheme = getattr(dataset, "scheme", None)
        if scheme is None and own_scheme is None:
            raise ValueError(f"{type(dataset).__name__} has no 'scheme' attribute: pass scheme=")
        self.scheme = get_scheme(own_scheme if scheme is None else scheme)
        if own_scheme is not None and get_scheme(own_scheme).num_points != self.scheme.num_points:
            raise ValueError(
                f"scheme {self.scheme.name} has {self.scheme.num_points} points but the dataset's scheme "
                f"{own_scheme} has {get_scheme(own_scheme).num_points}"
            )
        for name, value in (("input_size", input_size), ("heatmap_size", heatmap_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if input_size % heatmap_size:
            raise ValueError(f"input_size {input_size} must be a multiple of heatmap_size {heatmap_size}")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")
        if isinstance(crop_scale, bool) or not isinstance(crop_scale, (int, float)) or not 0 < crop_scale < math.inf:
            raise ValueError(f"crop_scale must be a positive finite number, got {crop_scale!r}")
        self.dataset = dataset
        self.input_size = input_size
        self.codec = HeatmapCodec(
            input_size, heatmap_size, sigma=None if codec_mode == "awing_official" else sigma, mode=codec_mode
        )
        self.crop_scale = float(crop_scale)
        self.augmenter = augmenter_from(augment, input_size)
        self.boundary = bool(boundary)
        self.seed = seed
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()

    @classmethod
    def from_config(cls, dataset: FaceDataset, cfg: DataConfig, train: bool, seed: int = 0) -> LandmarkTrainingSet:
        """The set described by a :class:`awing.config.DataConfig`; ``train=False`` leaves out augmentation."""
        return cls(
            dataset,
            scheme=cfg.scheme,
            input_size=cfg.input_size,
            heatmap_size=cfg.heatmap_size,
            sigma=cfg.sigma,
            codec_mode=cfg.codec,
            crop_scale=cfg.crop_scale,
            augment=cfg.augment if train else None,
            boundary=cfg.boundary,
            seed=seed,
        )

    @property
    def epoch(self) -> int:
        """The epoch whose augmentation stream samples are drawn from."""
        return int(self._epoch)

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation stream of ``epoch`` (shared with the DataLoader's workers)."""
        if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)) or epoch < 0:
            raise ValueError(f"epoch must be a non-negative int, got {epoch!r}")
        self._epoch.fill_(int(epoch))

    def __len__(self) -> int:
        return len(self.dataset)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({len(self)} faces, scheme {self.scheme.name}, {self.codec!r}, "
            f"crop_scale={self.crop_scale}, boundary={self.boundary}, augmenter={self.augmenter!r}, seed={self.seed})"
        )

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.dataset[index]
        position = int(index) % len(self)
        try:
            return self._build(sample, position)
        except DataError:
            raise
        except ValueError as error:
            raise DataError(f"cannot build training sample {position}: {error}", sample.image_path) from error

    def _build(self, sample: FaceSample, index: int) -> dict[str, Any]:
        rng = None if self.augmenter is None else sample_rng(self.seed, self.epoch, index)
        face = warp_face(
            sample.image,
            sample.landmarks_img,
            sample.visible,
            sample.box,
            self.scheme,
            self.input_size,
            crop_scale=self.crop_scale,
            params=None if rng is None else self.augmenter.sample_geometry(rng),
        )
        image = face.image if rng is None else self.augmenter.photometric(face.image, rng)
        weight, boundary = face_targets(
            face.landmarks_crop, face.visible, self.codec, self.scheme, with_boundary=self.boundary
        )
        item = {
            "image": torch.from_numpy(image),
            "point_weight": torch.from_numpy(weight),
            "landmarks_crop": torch.from_numpy(face.landmarks_crop),
            "visible": torch.from_numpy(face.visible),
            "matrix": torch.from_numpy(face.matrix),
            "index": index,
        }
        if boundary is not None:
            item["boundary"] = torch.from_numpy(boundary)
        return item

    def targets(self, batch: Mapping[str, torch.Tensor], device: torch.device | str | None = None) -> torch.Tensor:
        """The loss target of a collated batch (or of one item), on ``device`` (None: where the batch is).

        Returns:
            float32 (B, K + 1, H, W) (boundary last; (B, K, H, W) without it; no B for an item): the codec's
            heatmaps of ``landmarks_crop`` where ``point_weight > 0``, encoded on the device
            (:func:`awing.data.targets.heatmap_targets`), and the item's ``boundary``.
        """
        boundary = batch["boundary"].to(device, non_blocking=True) if self.boundary else None
        return heatmap_targets(
            batch["landmarks_crop"].to(device, non_blocking=True),
            batch["point_weight"].to(device, non_blocking=True),
            self.codec,
            boundary,
        )
