"""Command-line front end: ``awing <command> ...``. Every command returns an exit code (0 ok, 1 failures, 2 usage)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from awing.align_cli import add_align_parser
from awing.detection.commands import add_eval_detector_parser, add_train_detector_parser
from awing.engine.commands import add_eval_parser, add_train_parser
from awing.predict_cli import add_predict_parser
from awing.version import __version__


def _fail(command: str, err: Exception) -> int:
    print(f"awing {command}: error: {err}", file=sys.stderr)
    return 1


def _run_convert_official(args: argparse.Namespace) -> int:
    from awing.models import convert_official

    try:
        out = convert_official(args.checkpoint, args.out, scheme=args.scheme, input_size=args.input_size)
    except (OSError, ValueError) as err:
        return _fail("convert-official", err)
    print(out)
    return 0


def _add_convert_official(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "convert-official",
        help="convert an official AWing .pth checkpoint to awing .safetensors weights",
        description="Read an official AWing checkpoint (e.g. WFLW_4HG.pth) with torch.load(weights_only=True), check "
        "its layout strictly and write .safetensors weights with the model config and landmark scheme.",
    )
    p.add_argument("checkpoint", type=Path, help="official .pth file")
    p.add_argument("out", type=Path, help="output .safetensors file")
    p.add_argument("--scheme", default=None, help="landmark scheme name (default: from the point count)")
    p.add_argument("--input-size", type=int, default=256, help="input crop side (official 256)")
    p.set_defaults(run=_run_convert_official)


def _run_export(args: argparse.Namespace) -> int:
    from awing.export import export_onnx
    from awing.models.weights import model_from_state_dict, read_weights

    try:
        state_dict, info = read_weights(args.weights)
        model = model_from_state_dict(state_dict, info.config)
        diff = export_onnx(model, args.out, scheme=info.scheme, opset=args.opset, check=not args.no_check)
    except (ImportError, OSError, RuntimeError, ValueError) as err:
        return _fail("export", err)
    if diff is not None:
        print(f"onnxruntime vs PyTorch: max abs difference {diff:.3g}", file=sys.stderr)
    print(args.out)
    return 0


def _add_export(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export",
        help="export a landmark network to ONNX (crop -> heatmaps, dynamic batch)",
        description="Export the crop -> heatmaps network to ONNX and check it against PyTorch with onnxruntime. "
        "Needs the export extra: pip install 'awing[export]'.",
    )
    p.add_argument("--weights", type=Path, required=True, help="awing .safetensors (or .pth) weights")
    p.add_argument("--out", type=Path, required=True, help="output .onnx file")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    p.add_argument("--no-check", action="store_true", help="skip the onnxruntime parity check")
    p.set_defaults(run=_run_export)


COMMANDS: tuple[Callable[[argparse._SubParsersAction], object], ...] = (
    add_predict_parser,
    add_align_parser,
    add_train_parser,
    add_eval_parser,
    add_train_detector_parser,
    add_eval_detector_parser,
    _add_convert_official,
    _add_export,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="awing", description=__doc__)
    parser.add_argument("--version", action="version", version=f"awing {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in COMMANDS:
        add(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # key=value overrides may also follow the options (``awing eval CONFIG --weights W data.name=aflw``).
    if extra and hasattr(args, "overrides") and all("=" in token and not token.startswith("-") for token in extra):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
