"""Deploy form: folding BatchNorm changes no output."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import mobilenext
from helpers import randomise_norms
from mobilenext.deploy import ConvAct, fuse


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
    model = randomise_norms(mobilenext.create_model(name, num_classes=10, **kwargs))
    fused = fuse(model)
    norms_left = [n for n, m in fused.named_modules() if isinstance(m, nn.BatchNorm2d)]
    # The efficient models' head norm follows a block, not a conv sibling: it stays (one BN in the network).
    assert fused.fused_conv_bn > 30 and set(norms_left) <= {"head_norm"}
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # the original is untouched
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        torch.testing.assert_close(fused(x), model(x), rtol=1e-4, atol=1e-4)


def test_fuse_leaves_one_module_per_conv_in_the_sandglass_block():
    block = fuse(mobilenext.create_model("mobilenext_100")).blocks[3][1]
    # Activated layers become a ConvAct, the two linear ones their bare conv: no wrappers, no Identity calls.
    assert [type(block.conv_dw1), type(block.conv_expand)] == [ConvAct, ConvAct]
    assert [type(block.conv_reduce), type(block.conv_dw2)] == [nn.Conv2d, nn.Conv2d]
    assert isinstance(block.conv_dw1.act, nn.ReLU6)
