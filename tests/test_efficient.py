"""EfficientNet-based MobileNeXt and the paper's ablation baselines."""

from __future__ import annotations

import pytest
import timm
import torch
from timm.layers import Conv2dSame
from torch import nn

import mobilenext
from conftest import reference_path
from mobilenext.models import count_params
from printout import count_of, model_layers, printout_layers

EFFICIENT = {
    "mobilenext_efficient_l": ("official_mobilenext_efficient_l_4.29M_architecture.txt", 4_287_498),
    "mobilenext_efficient_xl": ("official_mobilenext_efficient_5.68M_architecture.txt", 5_683_740),
}


@pytest.mark.parametrize("name", EFFICIENT)
def test_exact_parameter_count(name):
    assert count_params(timm.create_model(name)) == EFFICIENT[name][1]
    assert count_params(timm.create_model(f"{name}_sympad")) == EFFICIENT[name][1]


@pytest.mark.parametrize("name", EFFICIENT)
def test_layers_equal_the_authors_printout(name):
    text = reference_path(EFFICIENT[name][0]).read_text()
    expected = printout_layers(text)
    ours = model_layers(timm.create_model(name))
    assert len(ours) == len(expected)
    for i, (a, b) in enumerate(zip(ours, expected, strict=True)):
        assert a == b, f"layer {i}: ours {a}, authors' {b}"
    model = timm.create_model(name)
    assert sum(isinstance(m, nn.SiLU) for m in model.modules()) >= count_of(text, "Swish")
    assert not any(isinstance(m, (nn.ReLU, nn.ReLU6)) for m in model.modules())


@pytest.mark.parametrize("name", EFFICIENT)
def test_tf_same_padding_where_the_authors_used_it(name):
    text = reference_path(EFFICIENT[name][0]).read_text()
    asymmetric = text.count("padding=(0, 1, 0, 1)") + text.count("padding=(1, 2, 1, 2)")
    model = timm.create_model(name)
    assert sum(isinstance(m, Conv2dSame) for m in model.modules()) == asymmetric  # every stride-2 conv
    assert not any(isinstance(m, Conv2dSame) for m in timm.create_model(f"{name}_sympad").modules())


@pytest.mark.parametrize("name", ["mobilenext_efficient_l", "mobilenext_efficient_xl_sympad"])
@pytest.mark.parametrize("size", [224, 80])
def test_forward_backward(name, size):
    model = timm.create_model(name, drop_path_rate=0.2, num_classes=10).train()
    out = model(torch.randn(2, 3, size, size))
    assert out.shape == (2, 10)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("name", EFFICIENT)
def test_efficient_features_only(name):
    model = timm.create_model(name, features_only=True)
    assert model.feature_info.reduction() == [2, 4, 8, 16, 32]
    assert model.feature_info.channels() == [96, 144, 192, 384, 1280]
    outputs = model(torch.randn(1, 3, 96, 96))
    assert [o.shape[1] for o in outputs] == [96, 144, 192, 384, 1280]
    assert [o.shape[-1] for o in outputs] == [48, 24, 12, 6, 3]


def test_sympad_loads_the_same_weights():
    tf = timm.create_model("mobilenext_efficient_l")
    sym = timm.create_model("mobilenext_efficient_l_sympad")
    sym.load_state_dict(tf.state_dict())


def test_half_identity_and_no_shortcut_ablations():
    half = timm.create_model("mobilenext_100_half_id")
    sixth = timm.create_model("mobilenext_100_sixth_id")
    plain = timm.create_model("mobilenext_100_no_shortcut")
    blocks = lambda m: [b for stage in m.blocks for b in stage]  # noqa: E731
    assert {b.identity_chs / b.out_chs for b in blocks(half) if b.has_shortcut} == {0.5}
    assert {round(b.identity_chs * 6 / b.out_chs, 6) for b in blocks(sixth) if b.has_shortcut} == {1.0}
    assert not any(b.has_shortcut for b in blocks(plain))
    assert count_params(half) == count_params(plain) == 3_535_416


def test_mobilenetv2_with_extra_depthwise_conv():
    base = timm.create_model("mobilenetv2_100")
    extra = timm.create_model("mobilenetv2_100_extra_dw")
    added = count_params(extra) - count_params(base)
    blocks = [b for stage in base.blocks for b in stage]
    out_channels = [b.conv_pwl.out_channels if hasattr(b, "conv_pwl") else b.conv_pw.out_channels for b in blocks]
    assert added == sum(c * 9 + 2 * c for c in out_channels)  # one dw 3x3 + BN per block
    out = extra(torch.randn(1, 3, 96, 96))
    assert out.shape == (1, 1000)
    features = timm.create_model("mobilenetv2_100_extra_dw", features_only=True)
    assert features.feature_info.channels() == [f["num_chs"] for f in base.feature_info]


def test_models_table_lists_the_variants(capsys):
    from mobilenext.cli import main

    assert main(["models", "--format", "csv", "--filter", "*efficient_l"]) == 0
    out = capsys.readouterr().out
    assert "mobilenext_efficient_l,4287498," in out and "76.59" in out
    assert set(mobilenext.list_models("mobilenext_efficient*")) == {
        f"{n}{s}" for n in EFFICIENT for s in ("", "_sympad")
    }
