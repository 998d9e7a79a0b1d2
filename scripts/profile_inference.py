"""Where inference time goes: the landmark and detector networks part by part, and the steps around them.

Run from the repository root: ``python scripts/profile_inference.py [--threads 2] [--json out.json]`` (a few
minutes on 2 cores). Markdown tables go to stdout, progress to stderr.

- **Networks** (bundled weights, else random ones of the same config): ``torch`` eager (channels-last,
  ``inference_mode``; the detector with its BatchNorm fused, as ``FaceDetector`` runs it) and ``onnxruntime``
  (:class:`awing.runtime.OnnxRunner`, all graph optimisations). Landmark network at batch 1 and 8 (128 x 128 crops),
  detector at batch 1 and 8 (640 x 480 images). Per part (the network's top-level modules: stem, each hourglass,
  heads; backbone stages, FPN, context, heads): milliseconds per call and share. torch: forward pre/post hooks on
  those modules (``perf_counter``; hooks add a few microseconds each). onnxruntime: its own profiler's kernel
  times, grouped by the module path in the exported node names. ``total`` is the plain call, timed without hooks
  or profiler.
- **Steps** on the one-face 640 x 480 JPEG of ``scripts/bench_predict.py``: JPEG read + decode (``load_image``),
  detector input (resize + pad + float NCHW, ``FaceDetector._prepare`` with the onnxruntime backend, as predict runs
  it), detector output (``_postprocess``: scores, top-k, box decoding, NMS, back to image pixels), the content
  check of one box, crop matrix + warp, normalise (stack, HWC -> CHW, / 255), heatmap
  decode (DARK) + inverse matrix, and JSON (``to_dict`` + ``json.dumps``); with torch on 1 thread (what the
  onnxruntime backend uses for this glue, :func:`awing.runtime.torch_threads`) and on ``--threads``.
- Timing: median (and minimum) of ``--repeats`` calls after warm-up. The machine may be shared: read ratios.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from bench_predict import make_photos
from torch import nn

from awing.aligner import BUNDLED_DETECTOR, BUNDLED_LANDMARKS, Face
from awing.detection import DetectorModelConfig, FaceDetector, FaceDetectorNet
from awing.detection.content import has_face_content
from awing.detection.detector import load_detector
from awing.detection.network import fuse_batchnorm
from awing.geometry import box_to_crop_matrix, invert, transform_points, warp_image
from awing.models import build_model, load_weights
from awing.runtime import LastStack, export_bytes, make_session, torch_threads


def timed(fn: Callable[[], object], repeats: int, warmup: int = 3) -> tuple[float, float]:
    """Median and minimum milliseconds of ``repeats`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        tic = time.perf_counter()
        fn()
        times.append(1000 * (time.perf_counter() - tic))
    return statistics.median(times), min(times)


def torch_parts(model: nn.Module, x: torch.Tensor, repeats: int) -> dict[str, float]:
    """Median ms per call of each top-level child of ``model`` (time between its pre- and post-forward hooks)."""
    spent: dict[str, list[float]] = defaultdict(list)
    started: dict[str, float] = {}
    handles = []
    for name, child in model.named_children():
        if isinstance(child, nn.ModuleList):
            children = [(f"{name}.{i}", c) for i, c in enumerate(child)]
        else:
            children = [(name, child)]
        for part, module in children:
            handles.append(
                module.register_forward_pre_hook(lambda _m, _i, p=part: started.__setitem__(p, time.perf_counter()))
            )
            handles.append(
                module.register_forward_hook(
                    lambda _m, _i, _o, p=part: spent[p].append(1000 * (time.perf_counter() - started[p]))
                )
            )
    with torch.inference_mode():
        for _ in range(3):
            model(x)
        spent.clear()
        for _ in range(repeats):
            model(x)
    for handle in handles:
        handle.remove()
    return {part: statistics.median(ms) for part, ms in spent.items()}


def ort_parts(model_bytes: bytes, x: np.ndarray, threads: int, repeats: int) -> dict[str, float]:
    """Mean ms per call of each top-level module path, from onnxruntime's profiler (kernel times summed)."""
    with tempfile.TemporaryDirectory() as tmp:
        session = make_session(model_bytes, threads, profile_prefix=str(Path(tmp) / "ort"))
        for _ in range(3):
            session.run(None, {"input": x})
        per_run: dict[str, float] = defaultdict(float)
        for _ in range(repeats):
            session.run(None, {"input": x})
        events = json.loads(Path(session.end_profiling()).read_text())
    kernels = [e for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]
    for event in kernels[-len(kernels) * repeats // (repeats + 3) :]:  # the timed runs only
        per_run[_part(event["name"])] += event["dur"] / 1000 / repeats
    return dict(per_run)


def _part(node_name: str) -> str:
    """``/model/m0/b1_4/conv1/Conv_kernel_time`` -> ``m0``; ``/stage3/...`` -> ``stage3``; ``/lateral.0/...``."""
    parts = [p for p in node_name.split("/") if p]
    if parts and parts[0] == "model":
        parts = parts[1:]
    if len(parts) < 2:
        return "(graph: shapes, casts, reshapes)"
    head = parts[0]
    if head in ("lateral", "merge", "context", "heads") and parts[1].isdigit():
        return f"{head}.{parts[1]}"
    return head


def network_rows(name: str, model: nn.Module, shape: tuple[int, ...], threads: int, repeats: int) -> list[dict]:
    """Per batch size in ``shape[0]`` list: part rows for torch and onnxruntime."""
    rows = []
    h, w = shape[-2:]
    names = ["heatmaps"] if isinstance(model, LastStack) else ["logits", "boxes", "landmarks"]
    axes = {name: {0: "batch"} for name in ["input", *names]}
    bytes_ = export_bytes(model, torch.rand(1, 3, h, w), names, axes)
    session = make_session(bytes_, threads)
    torch_model = model.to(memory_format=torch.channels_last)
    for batch in (1, 8):
        print(f"{name}: batch {batch}", file=sys.stderr)
        x = torch.rand(batch, 3, h, w) * (255 if "detector" in name else 1)
        xc = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            total_torch = timed(lambda xc=xc: torch_model(xc), repeats)
        total_ort = timed(lambda x=x: session.run(None, {"input": x.numpy()}), repeats)
        for backend, total, parts in (
            ("torch", total_torch, torch_parts(getattr(torch_model, "model", torch_model), xc, repeats)),
            ("onnxruntime", total_ort, ort_parts(bytes_, x.numpy(), threads, repeats)),
        ):
            rows.append({"network": name, "backend": backend, "batch": batch, "part": "total", "ms": total[0],
                         "min_ms": total[1]})  # fmt: skip
            for part, ms in parts.items():
                rows.append({"network": name, "backend": backend, "batch": batch, "part": part, "ms": ms,
                             "share": ms / total[0]})  # fmt: skip
    return rows


def step_rows(detector: FaceDetector, landmark: nn.Module, repeats: int) -> list[dict]:
    """The steps around the networks on the one-face VGA JPEG (the landmark network itself excluded)."""
    from awing.codecs import HeatmapCodec
    from awing.data.io import read_image as load_image

    with tempfile.TemporaryDirectory() as tmp:
        photo = make_photos(Path(tmp))["one face"]
        path = photo["path"]
        image = load_image(path)
        steps: dict[str, Callable[[], object]] = {"read + decode JPEG (load_image)": lambda: load_image(path)}
        batch, scales = detector._prepare([image])
        steps["detector input: resize + pad + float NCHW"] = lambda: detector._prepare([image])
        with torch.inference_mode():
            outputs = tuple(map(torch.from_numpy, detector._runner(batch.numpy())))
        steps["detector output: scores, top-k, decode, NMS, map back"] = lambda: detector._postprocess(
            *outputs, batch.shape[-2:], scales
        )
        box = photo["boxes"][0]
        steps["content check of one box (texture, two tones)"] = lambda: has_face_content(image, box)
        size = landmark.config.input_size
        matrix = box_to_crop_matrix(box, size, 1.25)
        steps["crop matrix + warp (1 face)"] = lambda: warp_image(image, box_to_crop_matrix(box, size, 1.25), size)
        crop = warp_image(image, matrix, size)
        steps["normalise: stack, HWC -> CHW, / 255"] = lambda: (
            torch.from_numpy(np.stack([crop])).permute(0, 3, 1, 2).float().div_(255.0).numpy()
        )
        codec = HeatmapCodec(size, landmark.config.heatmap_size, sigma=1.5)
        with torch.inference_mode():
            heatmaps = landmark(torch.from_numpy(crop).permute(2, 0, 1)[None].float() / 255)[-1][:, :68].float()

        def decode() -> np.ndarray:
            points, _ = codec.decode(heatmaps)
            return transform_points(invert(matrix), codec.to_crop(points)[0].numpy())

        steps["heatmap decode (DARK) + inverse matrix"] = decode
        points = decode().astype(np.float32)
        face = Face(box.astype(np.float32), 0.9, points, np.ones(68, np.float32), "68")
        record = {"image": str(path), "width": 640, "height": 480, "faces": [face.to_dict()]}
        steps["JSON (to_dict + dumps)"] = lambda: json.dumps({**record, "faces": [face.to_dict()]})
        rows = []
        for threads in sorted({1, torch.get_num_threads()}):
            with torch_threads(threads), torch.inference_mode():
                for step, fn in steps.items():
                    median, minimum = timed(fn, repeats)
                    rows.append({"step": step, "torch_threads": threads, "ms": median, "min_ms": minimum})
    return rows


def load_networks() -> tuple[nn.Module, FaceDetectorNet, list[str]]:
    notes = []
    if BUNDLED_LANDMARKS.is_file():
        landmark = load_weights(BUNDLED_LANDMARKS).eval()
        notes.append(f"landmark network: {BUNDLED_LANDMARKS.name} {landmark.config}")
    else:
        landmark = build_model("cpu_small", num_landmarks=68).eval()
        notes.append("landmark network: random cpu_small (no bundled weights)")
    if BUNDLED_DETECTOR.is_file():
        detector, _ = load_detector(BUNDLED_DETECTOR)
        notes.append(f"detector: {BUNDLED_DETECTOR.name}")
    else:
        detector = FaceDetectorNet(DetectorModelConfig()).eval()
        notes.append("detector: random weights (no bundled file)")
    return landmark, fuse_batchnorm(detector.eval()), notes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--steps-only", action="store_true", help="skip the network tables")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    landmark, detector_net, notes = load_networks()
    rows = []
    if not args.steps_only:
        rows += network_rows("landmarks", LastStack(landmark), (1, 3, 128, 128), args.threads, args.repeats)
        rows += network_rows("detector", detector_net, (1, 3, 480, 640), args.threads, args.repeats)
    detector = FaceDetector(detector_net, backend="onnxruntime")  # as FaceAligner runs it on the CPU
    steps = step_rows(detector, landmark, args.repeats)
    import os

    print(f"torch {torch.__version__}, {args.threads} threads, load average {os.getloadavg()[0]:.2f}")
    for note in notes:
        print(f"- {note}")
    print("\n| network | backend | batch | part | ms / call (min) | share |\n|---|---|---|---|---|---|")
    for r in rows:
        timing = f"{r['ms']:.2f}" + (f" ({r['min_ms']:.2f})" if "min_ms" in r else "")
        share = f"{100 * r['share']:.0f} %" if "share" in r else ""
        print(f"| {r['network']} | {r['backend']} | {r['batch']} | {r['part']} | {timing} | {share} |")
    print("\n| step (one-face 640 x 480 JPEG) | torch threads | ms (min) |\n|---|---|---|")
    for r in steps:
        print(f"| {r['step']} | {r['torch_threads']} | {r['ms']:.2f} ({r['min_ms']:.2f}) |")
    if args.json:
        args.json.write_text(json.dumps({"threads": args.threads, "notes": notes, "networks": rows, "steps": steps},
                                        indent=2))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
