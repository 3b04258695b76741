"""Deploy form: folding BatchNorm changes no output."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import mobilenext
from mobilenext.deploy import fuse


def _randomise_norms(model: nn.Module) -> nn.Module:
    """Non-trivial BN statistics, as after training, so a wrong fold cannot pass by accident."""
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.2)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.2)
    return model.eval()


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("mobilenext_100", {}),
        ("mobilenext_100", {"identity_multiplier": 0.5}),
        ("mobilenext_efficient_xl", {}),
        ("mobilenetv2_100", {}),
    ],
)
def test_fused_model_equals_unfused(name, kwargs):
    model = _randomise_norms(mobilenext.create_model(name, num_classes=10, **kwargs))
    fused = fuse(model)
    norms_left = [n for n, m in fused.named_modules() if isinstance(m, nn.BatchNorm2d)]
    # The efficient models' head norm follows a block, not a conv sibling: it stays (one BN in the network).
    assert fused.fused_conv_bn > 30 and set(norms_left) <= {"head_norm"}
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # the original is untouched
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        torch.testing.assert_close(fused(x), model(x), rtol=1e-4, atol=1e-4)
