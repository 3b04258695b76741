"""The MobileNeXt family: exact to the authors' release, and a well-behaved timm model."""

from __future__ import annotations

import warnings

import pytest
import timm
import torch

import mobilenext
from conftest import WIDTHS, random_official_state_dict, reference_params_madds, reference_shapes
from mobilenext import ConfigError, UnknownModelError
from mobilenext.models import OfficialMobileNeXt, count_madds, count_params, official_to_ours, ours_to_official

PARAMS = {
    "mobilenext_140": 6_126_168,
    "mobilenext_100": 3_535_416,
    "mobilenext_075": 2_766_168,
    "mobilenext_050": 2_152_304,
    "mobilenext_035": 1_913_976,
}


def test_every_width_is_registered_with_timm():
    assert set(mobilenext.list_models("mobilenext_[0-9][0-9][0-9]")) == set(PARAMS)
    assert set(PARAMS) <= set(timm.list_models("mobilenext_*"))


@pytest.mark.parametrize("name", PARAMS)
def test_param_count_equals_the_authors_code(name):
    model = timm.create_model(name)
    assert count_params(model) == PARAMS[name]
    assert count_params(model) == int(reference_params_madds()[WIDTHS[name][1]]["params_official_code"])


@pytest.mark.parametrize("name", PARAMS)
def test_madds_within_two_percent_of_the_authors_code(name):
    reference = float(reference_params_madds()[WIDTHS[name][1]]["madds_M_official_code_conv_linear_only"])
    measured = count_madds(timm.create_model(name)) / 1e6
    assert abs(measured - reference) / reference < 0.02, (measured, reference)


@pytest.mark.parametrize("name", PARAMS)
def test_state_dict_shapes_equal_the_authors_release(name):
    model = timm.create_model(name)
    ours = {k: list(v.shape) for k, v in ours_to_official(model.state_dict(), model).items()}
    reference = reference_shapes(name)
    assert ours == reference
    assert list(ours) == list(reference)  # same order too: the mapping is one to one


@pytest.mark.parametrize("name", PARAMS)
def test_reference_model_has_the_authors_layout(name):
    # Anchors the test-side reference model to the released shapes before it is used as ground truth.
    official = OfficialMobileNeXt(WIDTHS[name][1])
    assert {k: list(v.shape) for k, v in official.state_dict().items()} == reference_shapes(name)


@pytest.mark.parametrize("name, alpha", [("mobilenext_100", 1.0), ("mobilenext_100", 0.5), ("mobilenext_035", 1 / 6)])
def test_outputs_equal_the_authors_forward_with_their_weights(name, alpha, image_batch):
    state_dict = random_official_state_dict(name)
    official = OfficialMobileNeXt(WIDTHS[name][1], identity_multiplier=alpha).eval()
    official.load_state_dict(state_dict)
    ours = timm.create_model(name, identity_multiplier=alpha).eval()
    ours.load_state_dict(official_to_ours(state_dict, ours))
    with torch.no_grad():
        torch.testing.assert_close(ours(image_batch), official(image_batch), rtol=0, atol=0)


def test_timm_kwargs(image_batch):
    model = timm.create_model("mobilenext_050", num_classes=7, in_chans=1, drop_rate=0.3, drop_path_rate=0.1)
    assert model(image_batch[:, :1]).shape == (2, 7)
    assert model.drop_rate == 0.3
    rates = [b.drop_path.drop_prob for stage in model.blocks for b in stage if hasattr(b.drop_path, "drop_prob")]
    assert rates == sorted(rates) and 0 < rates[-1] < 0.1  # linear over depth, below the maximum


def test_forward_features_head_and_reset_classifier(image_batch):
    model = timm.create_model("mobilenext_100").eval()
    features = model.forward_features(image_batch)
    assert features.shape == (2, 1280, 3, 3)
    assert model.forward_head(features, pre_logits=True).shape == (2, 1280)
    assert model.num_features == 1280
    model.reset_classifier(5)
    assert model(image_batch).shape == (2, 5) and model.get_classifier().out_features == 5
    model.reset_classifier(0)
    assert model(image_batch).shape == (2, 1280)


@pytest.mark.parametrize(
    "name, channels", [("mobilenext_100", [32, 144, 192, 384, 1280]), ("mobilenext_050", [16, 72, 96, 192, 1280])]
)
def test_features_only(name, channels, image_batch):
    model = timm.create_model(name, features_only=True)
    assert model.feature_info.channels() == channels
    assert model.feature_info.reduction() == [2, 4, 8, 16, 32]
    outputs = model(image_batch)
    assert [o.shape[1] for o in outputs] == channels
    assert [96 // o.shape[-1] for o in outputs] == [2, 4, 8, 16, 32]

    picked = timm.create_model(name, features_only=True, out_indices=(2, 4))
    assert picked.feature_info.channels() == [channels[2], channels[4]]
    assert [o.shape[1] for o in picked(image_batch)] == [channels[2], channels[4]]


def test_forward_intermediates_match_features_only(image_batch):
    torch.manual_seed(0)
    model = timm.create_model("mobilenext_075").eval()
    torch.manual_seed(0)  # same seed, same weights: features_only wraps the same modules
    features = timm.create_model("mobilenext_075", features_only=True).eval()
    with torch.no_grad():
        final, intermediates = model.forward_intermediates(image_batch)
        torch.testing.assert_close(final, model.forward_features(image_batch))
        for a, b in zip(intermediates, features(image_batch), strict=True):
            torch.testing.assert_close(a, b)
        early = model.forward_intermediates(image_batch, indices=[1], stop_early=True, intermediates_only=True)
        torch.testing.assert_close(early[0], intermediates[1])


def test_grad_checkpointing_gives_the_same_output_and_gradients(image_batch):
    model = timm.create_model("mobilenext_035", drop_rate=0.0).train()
    model(image_batch).sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model.set_grad_checkpointing(True)
    model(image_batch).sum().backward()
    for a, p in zip(grads, model.parameters(), strict=True):
        torch.testing.assert_close(a, p.grad)


def test_pretrained_cfg():
    cfg = timm.create_model("mobilenext_100").pretrained_cfg
    assert cfg["input_size"] == (3, 224, 224) and cfg["crop_pct"] == 0.875
    assert cfg["interpolation"] == "bilinear" and cfg["mean"] == (0.485, 0.456, 0.406)
    assert cfg["classifier"] == "classifier" and cfg["first_conv"] == "stem.conv"
    assert not cfg.get("url") and not cfg.get("hf_hub_id")  # nothing ever downloads


@pytest.mark.parametrize("alpha", [1.0, 0.5])
def test_jit_trace_and_torch_export(alpha, image_batch):
    model = timm.create_model("mobilenext_100", identity_multiplier=alpha).eval()
    with torch.no_grad():
        expected = model(image_batch)
        with warnings.catch_warnings():  # deprecated in recent PyTorch, still used in the field
            warnings.simplefilter("ignore", FutureWarning)
            traced = torch.jit.trace(model, image_batch)
        torch.testing.assert_close(traced(image_batch), expected)
        batch = torch.export.Dim("batch", min=1, max=64)
        program = torch.export.export(model, (image_batch,), dynamic_shapes=({0: batch},))
        torch.testing.assert_close(program.module()(image_batch), expected)
        torch.testing.assert_close(program.module()(image_batch[:1]), expected[:1])


def test_shortcut_off_removes_every_residual():
    model = timm.create_model("mobilenext_100", shortcut=False)
    assert not any(b.has_shortcut for stage in model.blocks for b in stage)
    assert count_params(model) == PARAMS["mobilenext_100"]


@pytest.mark.parametrize("width", [0, -1.0])
def test_width_must_be_positive(width):
    with pytest.raises(ConfigError, match="width_mult must be positive"):
        mobilenext.MobileNeXt(width_mult=width)


def test_bad_identity_multiplier_through_timm():
    with pytest.raises(ConfigError, match=r"in \(0, 1\]"):
        timm.create_model("mobilenext_100", identity_multiplier=2)


def test_unknown_model_suggests_close_names():
    with pytest.raises(UnknownModelError, match="did you mean .*mobilenext_100"):
        mobilenext.create_model("mobilenext_10")
