"""awing.models.shrink: a smaller hourglass cut out of a bigger one computes what the bigger one computes on the
kept channels."""

import pytest
import torch

from awing.models import build_model
from awing.models.shrink import _index_for, shrink_hourglass, shrink_plan


@pytest.fixture(scope="module")
def big():
    torch.manual_seed(0)
    model = build_model(num_stacks=2, num_landmarks=5, features=32, depth=2, input_size=32).eval()
    for module in model.modules():  # batch norms that are not the identity
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_(0, 0.1)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.normal_(1.0, 0.3)
            module.bias.data.normal_(0.0, 0.1)
    return model


@pytest.mark.parametrize("stacks", [1, 2])
def test_same_width_keeps_the_first_stacks_exactly(big, stacks):
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(shrink_hourglass(big, stacks, 32)(x)[-1], big(x)[stacks - 1])


@pytest.mark.parametrize("stacks", [1, 2])
def test_narrower_model_equals_the_big_one_when_dropped_channels_are_not_read(big, stacks):
    """Zero every convolution weight that the plan does not copy: the big model's kept channels then never read
    a dropped one, so the small model must compute its output exactly (float rounding of other sums only)."""
    plan = shrink_plan(big, stacks, 16)
    masked = build_model(big.config).eval()
    masked.load_state_dict(big.state_dict())
    with torch.no_grad():
        for key, weight in masked.named_parameters():
            index = _index_for(key, plan)
            if weight.ndim == 4 and index is not None:
                mask = torch.zeros_like(weight)
                if len(index) == 2:
                    mask[index[0][:, None], index[1][None, :]] = 1
                else:
                    mask[index[0]] = 1
                weight.mul_(mask)
        small = shrink_hourglass(masked, stacks, 16)
        x = torch.rand(2, 3, 32, 32)
        assert small.config.features == 16 and small.config.num_stacks == stacks
        torch.testing.assert_close(small(x)[-1], masked(x)[stacks - 1], atol=1e-5, rtol=1e-5)


def test_kept_channels_follow_the_conv_block_layout(big):
    """A ConvBlock writes [out/2, out/4, out/4]: the kept set takes new/2, new/4, new/4 of those parts."""
    keep = shrink_plan(big, 1, 16)["conv4.downsample.2.weight"][0]
    assert [int(((keep >= a) & (keep < b)).sum()) for a, b in [(0, 16), (16, 24), (24, 32)]] == [8, 4, 4]


@pytest.mark.parametrize(("stacks", "features"), [(3, 16), (0, 16), (1, 40), (1, 12)])
def test_bad_sizes_are_refused(big, stacks, features):
    with pytest.raises(ValueError, match="num_stacks|features"):
        shrink_plan(big, stacks, features)
