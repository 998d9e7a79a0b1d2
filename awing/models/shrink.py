"""A smaller stacked hourglass cut out of a trained one: the first stacks, the most important channels.

Used to start a fast preset from the bundled model instead of from random weights (issue 16: a 1-stack x 64-feature
network fine-tuned from the first stack of the 2 x 96 default). Structured pruning in the sense of Li et al.,
"Pruning Filters for Efficient ConvNets" (ICLR 2017): whole channels go, ranked by the L1 size of what reads them.

Channels that are added together (identity residuals, ``previous + bl + al``) share one *space*, and every space is
cut with one index set. A :class:`~awing.models.layers.ConvBlock` output is the concatenation ``[out/2, out/4,
out/4]`` of its three convolutions, so the kept set of a space that a ConvBlock writes takes ``new/2`` channels of
the first half and ``new/4`` of each quarter. Spaces (``F`` = features):

- ``stem``: ``conv1`` output (``F/4``); ``half``: ``conv2`` output = ``conv3`` = ``conv4`` input (``F/2``);
- ``trunk``: ``conv4`` output, every hourglass input and the ``bl``/``al`` outputs (``F``);
- ``hg{i}``: the output of hourglass ``i``'s CoordConv, inside the hourglass and ``top_m_{i}`` (``F``);
- ``head{i}``: ``conv_last{i}`` output (``F``).

Importance of a channel: the summed ``|gamma|`` of the batch norms that read it, or for ``trunk`` (read by the
hourglass CoordConvs) the L1 norm of the weights that read it.
"""

from __future__ import annotations

import torch
from torch import Tensor

from awing.models.hourglass import StackedHourglass, build_model

Index = tuple[Tensor, ...]


def _top(importance: Tensor, start: int, end: int, count: int) -> Tensor:
    return start + torch.topk(importance[start:end], count).indices.sort().values


def _keep(importance: Tensor, new_width: int, structured: bool) -> Tensor:
    """Indices of the ``new_width`` kept channels; ``structured``: new/2 of the first half, new/4 of each quarter."""
    width = importance.numel()
    if not structured:
        return _top(importance, 0, width, new_width)
    half, quarter = width // 2, width // 4
    return torch.cat(
        [
            _top(importance, 0, half, new_width // 2),
            _top(importance, half, half + quarter, new_width // 4),
            _top(importance, half + quarter, width, new_width // 4),
        ]
    )


def _conv_block_plan(prefix: str, keep_in: Tensor, keep_out: Tensor, width_out: int, has_downsample: bool) -> dict:
    half, quarter = width_out // 2, width_out // 4
    out1 = keep_out[keep_out < half]
    out2 = keep_out[(keep_out >= half) & (keep_out < half + quarter)] - half
    out3 = keep_out[keep_out >= half + quarter] - half - quarter
    plan = {
        f"{prefix}.bn1": (keep_in,),
        f"{prefix}.conv1.weight": (out1, keep_in),
        f"{prefix}.bn2": (out1,),
        f"{prefix}.conv2.weight": (out2, out1),
        f"{prefix}.bn3": (out2,),
        f"{prefix}.conv3.weight": (out3, out2),
    }
    if has_downsample:
        plan[f"{prefix}.downsample.0"] = (keep_in,)
        plan[f"{prefix}.downsample.2.weight"] = (keep_out, keep_in)
    return plan


def shrink_plan(model: StackedHourglass, num_stacks: int, features: int) -> dict[str, Index]:
    """For every parameter and buffer of the smaller model, the indices to take from ``model``'s tensor.

    Keys name tensors (``conv1.conv.weight``) or batch norms (``conv2.bn1``: all its per-channel tensors). Index
    tuples apply to the leading dimensions (output channels, then input channels); a key that is missing is
    copied whole.
    """
    cfg = model.config
    if not 1 <= num_stacks <= cfg.num_stacks:
        raise ValueError(f"num_stacks must be in [1, {cfg.num_stacks}], got {num_stacks}")
    if features % 8 or not 8 <= features <= cfg.features:
        raise ValueError(f"features must be a multiple of 8 in [8, {cfg.features}], got {features}")
    big, state = cfg.features, model.state_dict()

    def gammas(*names: str) -> Tensor:
        return sum(state[f"{name}.weight"].abs() for name in names)

    def blocks(prefix: str) -> list[str]:
        return sorted({k.rsplit(".bn1.", 1)[0] for k in state if k.startswith(prefix) and ".bn1." in k})

    stem = _keep(gammas("bn1"), features // 4, structured=False)
    half = _keep(gammas("conv3.bn1", "conv4.bn1"), features // 2, structured=True)
    trunk_reads = sum(state[f"m{i}.coordconv.conv.weight"][:, :big].abs().sum((0, 2, 3)) for i in range(num_stacks))
    trunk = _keep(trunk_reads, features, structured=True)

    plan: dict[str, Index] = {"conv1.conv.weight": (stem,), "conv1.conv.bias": (stem,), "bn1": (stem,)}
    plan |= _conv_block_plan("conv2", stem, half, big // 2, has_downsample=True)
    plan |= _conv_block_plan("conv3", half, half, big // 2, has_downsample=False)
    plan |= _conv_block_plan("conv4", half, trunk, big, has_downsample=True)
    for i in range(num_stacks):
        names = blocks(f"m{i}.") + [f"top_m_{i}"]
        hg = _keep(gammas(*(f"{name}.bn1" for name in names)), features, structured=True)
        head = _keep(gammas(f"bn_end{i}"), features, structured=False)
        coords = torch.arange(big, state[f"m{i}.coordconv.conv.weight"].shape[1])  # coordinate channels stay
        coord_in = torch.cat([trunk, coords])
        plan[f"m{i}.coordconv.conv.weight"] = (hg, coord_in)
        plan[f"m{i}.coordconv.conv.bias"] = (hg,)
        for name in names:
            plan |= _conv_block_plan(name, hg, hg, big, has_downsample=False)
        plan[f"conv_last{i}.weight"] = (head, hg)
        plan[f"conv_last{i}.bias"] = (head,)
        plan[f"bn_end{i}"] = (head,)
        plan[f"l{i}.weight"] = (torch.arange(cfg.out_channels), head)
        if i < num_stacks - 1:
            plan[f"bl{i}.weight"] = (trunk, head)
            plan[f"bl{i}.bias"] = (trunk,)
            plan[f"al{i}.weight"] = (trunk,)
            plan[f"al{i}.bias"] = (trunk,)
    return plan


def _take(tensor: Tensor, index: Index) -> Tensor:
    for dim, idx in enumerate(index):
        tensor = tensor.index_select(dim, idx)
    return tensor


def _index_for(key: str, plan: dict[str, Index]) -> Index | None:
    if key in plan:
        return plan[key]
    module = key.rsplit(".", 1)[0]
    if module in plan and not key.endswith("num_batches_tracked"):
        return plan[module]
    return None


def shrink_hourglass(model: StackedHourglass, num_stacks: int, features: int) -> StackedHourglass:
    """A ``num_stacks`` x ``features`` hourglass whose tensors are slices of ``model``'s (see the module docstring).

    Its last head is ``model``'s stack ``num_stacks - 1`` head, so with ``features == model.config.features`` it
    computes exactly ``model``'s output ``num_stacks - 1``. Returned in eval mode; fine-tune it before use.
    """
    plan = shrink_plan(model, num_stacks, features)
    small = build_model(model.config, num_stacks=num_stacks, features=features)
    source = model.state_dict()
    state = {}
    for key, target in small.state_dict().items():
        index = _index_for(key, plan)
        state[key] = source[key].clone() if index is None else _take(source[key], index).clone()
        if state[key].shape != target.shape:
            raise AssertionError(f"shrink plan gives {key} shape {tuple(state[key].shape)}, expected {target.shape}")
    small.load_state_dict(state)
    return small.eval()
