"""Cut a smaller landmark model out of a trained one (first stacks, most important channels) to fine-tune from.

Run from the repository root::

    python scripts/shrink_model.py --weights awing/assets/landmarks_68.safetensors --stacks 1 --features 64 \
        --out runs/init/landmarks_68_1x64.safetensors

The result is the start of ``configs/aflw68_fast_cpu.yaml`` (``run.init_weights``); see
:mod:`awing.models.shrink` for which channels are kept. It is not usable before fine-tuning.
"""

from __future__ import annotations

import argparse
import sys

from awing.models.shrink import shrink_hourglass
from awing.models.weights import model_from_state_dict, read_weights, save_weights


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", required=True, help="trained .safetensors file")
    parser.add_argument("--stacks", type=int, required=True)
    parser.add_argument("--features", type=int, required=True)
    parser.add_argument("--out", required=True, help="output .safetensors file")
    args = parser.parse_args(argv)
    state_dict, info = read_weights(args.weights)
    small = shrink_hourglass(model_from_state_dict(state_dict, info.config), args.stacks, args.features)
    path = save_weights(small, args.out, scheme=info.scheme)
    print(f"{path}: {small.config}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
