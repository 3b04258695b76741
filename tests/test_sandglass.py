"""The sandglass block on its own: layout, identity multiplier, drop-path, export-friendliness."""

from __future__ import annotations

import pytest
import timm
import torch
from torch import nn

from helpers import randomise_norms
from mobilenext import ConfigError, SandglassBlock
from mobilenext.models import OfficialMobileNeXt, identity_channels, sandglass_reduced_channels
from mobilenext.models.layers import ConvNormAct


@pytest.mark.parametrize(
    "in_chs, out_chs, t, expected",
    [
        (32, 96, 2, 16),  # in // t
        (96, 144, 6, 32),  # floor: ceil(144 / 6) = 24 rounded to 16 -> 32
        (960, 1280, 6, 208),  # ceil(1280 / 6) = 214 -> 208
        (192, 192, 6, 32),
        (72, 112, 6, 32),  # width 0.75: 19 -> 16 is below 90% of 19, so 32
    ],
)
def test_reduced_channels_follow_the_authors_rule(in_chs, out_chs, t, expected):
    assert sandglass_reduced_channels(in_chs, out_chs, t) == expected


def _block(alpha: float = 1.0, **kwargs) -> SandglassBlock:
    torch.manual_seed(0)
    block = SandglassBlock(48, 48, reduced_chs=8, identity_multiplier=alpha, **kwargs).eval()
    for m in block.modules():  # non-trivial BN statistics so the branch is not near zero
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 1.5)
    return block


def test_block_layout_and_shapes():
    block = SandglassBlock(32, 64, reduced_chs=16, stride=2, dw_in=False)
    assert isinstance(block.conv_dw1, nn.Identity)
    assert block.conv_dw2.conv.stride == (2, 2) and block.conv_dw2.conv.groups == 64
    assert not block.has_shortcut
    assert block(torch.randn(1, 32, 16, 16)).shape == (1, 64, 8, 8)
    # linear bottleneck: no activation after the reduction or the last depthwise conv
    assert [type(m) for m in block.conv_reduce] == [nn.Conv2d, nn.BatchNorm2d]
    assert [type(m) for m in block.conv_dw2] == [nn.Conv2d, nn.BatchNorm2d]
    assert [type(m) for m in block.conv_expand] == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU6]


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(kernel_size=3, stride=2, groups=16, act_layer=nn.ReLU6),
        dict(kernel_size=1, act_layer=None),
        dict(kernel_size=3, stride=2, padding="same", act_layer=nn.SiLU),
    ],
)
def test_conv_norm_act_loads_and_matches_timms(kwargs):
    # checkpoints written while the block was built from timm's ConvNormAct must load unchanged
    torch.manual_seed(0)
    timm_kwargs = dict(kwargs, apply_act=kwargs["act_layer"] is not None)
    if timm_kwargs["act_layer"] is None:
        del timm_kwargs["act_layer"]
    theirs = timm.layers.ConvNormAct(16, 16, **timm_kwargs).eval()
    randomise_norms(theirs)
    ours = ConvNormAct(16, 16, **kwargs).eval()
    ours.load_state_dict(theirs.state_dict())  # strict: the same keys and shapes
    x = torch.randn(2, 16, 9, 9)
    torch.testing.assert_close(ours(x), theirs(x), rtol=0, atol=0)


@pytest.mark.parametrize("alpha, expected_k", [(1.0, 48), (0.5, 24), (1 / 3, 16), (1 / 6, 8)])
def test_identity_multiplier_adds_shortcut_to_first_channels_only(alpha, expected_k):
    block = _block(alpha)
    assert block.identity_chs == expected_k
    x = torch.randn(2, 48, 8, 8)
    with torch.no_grad():
        out = block(x)
        block.has_shortcut = False
        branch = block(x)
    residual = out - branch
    torch.testing.assert_close(residual[:, :expected_k], x[:, :expected_k])
    assert torch.equal(residual[:, expected_k:], torch.zeros_like(residual[:, expected_k:]))


@pytest.mark.parametrize("alpha", [0.0, -0.5, 1.5, float("nan")])
def test_identity_multiplier_outside_unit_interval_is_a_clear_error(alpha):
    with pytest.raises(ConfigError, match=r"identity_multiplier must be in \(0, 1\]"):
        SandglassBlock(48, 48, reduced_chs=8, identity_multiplier=alpha)


def test_stride_two_needs_the_trailing_depthwise_conv():
    with pytest.raises(ConfigError, match="dw_out"):
        SandglassBlock(32, 32, reduced_chs=8, stride=2, dw_out=False)


def test_drop_path_drops_the_residual_branch():
    block = _block(drop_path_rate=1.0).train()
    x = torch.randn(2, 48, 8, 8)
    torch.testing.assert_close(block(x), x)  # branch always dropped: the block is the identity
    block.eval()
    assert not torch.allclose(block(x), x)  # no drop-path at inference


def test_identity_channels_rounds():
    assert identity_channels(144, 1 / 6) == 24
    assert identity_channels(100, 0.5) == 50


def _exported_ops(model: nn.Module, x: torch.Tensor) -> set[str]:
    program = torch.export.export(model.eval(), (x,))
    return {str(node.target) for node in program.graph.nodes if node.op == "call_function"}


def test_partial_identity_exports_without_scatter():
    ops = _exported_ops(_block(0.5), torch.randn(1, 48, 8, 8))
    assert not any(("scatter" in op) or ("index_put" in op) or ("copy_" in op) for op in ops), ops
    assert "aten.cat.default" not in ops and "aten.slice.Tensor" not in ops  # a masked full-width add instead
    assert {"aten.mul.Tensor", "aten.add.Tensor"} <= ops


@pytest.mark.parametrize("alpha", [1.0, 0.5])
def test_authors_forward_slice_assigns_the_shortcut_in_every_shortcut_block(alpha):
    """Their ``SGBlock.forward`` (``mnext.py``), as documented in ``OfficialMobileNeXt``: every block with
    stride 1 and equal widths assigns ``out[:, :k] = out[:, :k] + x[:, :k]``, k = C at alpha 1 (their
    release), C/2 at alpha 1/2; the other channels are the branch's. And it exports as that slice
    assignment (a scatter), also at alpha 1: the contrast with our block's plain or masked add."""
    torch.manual_seed(0)
    model = OfficialMobileNeXt(0.35, identity_multiplier=alpha).eval()
    shortcut_blocks = [block for block in model.features[1:] if block.use_res_connect]
    assert len(shortcut_blocks) == 12  # 2 + 2 + 3 + 3 + 2 in the 192/288/384/576/960 stages
    for block in shortcut_blocks:
        chs = block.conv[0].in_channels
        x = torch.randn(1, chs, 5, 5)
        with torch.no_grad():
            branch, out = block.conv(x), block(x)
        k = identity_channels(chs, alpha)
        assert k == (chs if alpha == 1 else chs // 2)
        torch.testing.assert_close(out[:, :k], branch[:, :k] + x[:, :k], rtol=0, atol=0)
        torch.testing.assert_close(out[:, k:], branch[:, k:], rtol=0, atol=0)
    ops = _exported_ops(shortcut_blocks[0], torch.randn(1, shortcut_blocks[0].conv[0].in_channels, 8, 8))
    assert any(("scatter" in op) or ("copy_" in op) or ("index_put" in op) for op in ops), ops


def test_eager_inference_adds_in_place_with_the_same_result():
    """Without autograd the partial shortcut is added in place (k channels touched); values must not change."""
    block = _block(0.5).eval()
    x = torch.randn(2, 48, 8, 8)
    original = x.clone()
    with torch.no_grad():
        in_place = block(x)
    masked = block(x)  # autograd on: the masked full-width add
    assert masked.grad_fn is not None and "Add" in masked.grad_fn.name()
    torch.testing.assert_close(in_place, masked, rtol=0, atol=0)
    assert torch.equal(x, original)  # the block's input is never written
