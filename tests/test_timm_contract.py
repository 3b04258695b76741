"""timm's model contract (what its own tests/test_models.py asks of every timm model), on every model we
register (the MobileNeXt family, the extra-dw MobileNetV2 baseline, DARTS's CIFAR network): default cfgs
and the head API, global_pool='' keeping the feature map, device/dtype factory arguments,
forward/backward, forward_features, forward_intermediates + features_only, fx, fx + TorchScript and
TorchScript, each form giving the eager model's outputs. Written here from the contract, not copied.

The shape checks run on the meta device (no memory, no compute); the numeric ones on small real inputs.
"""

import ast
import importlib
import inspect
from pathlib import Path

import pytest
import timm
import torch
from timm.models import EfficientNet, create_feature_extractor, get_graph_node_names

import mobilenext  # noqa: F401  (registers the models)
from mobilenext.models.factory import list_models

MODELS = list_models()


def _small_input(name: str) -> torch.Tensor:
    """Two images of at most 64 px (DARTS's network: its 32), to keep the numeric checks cheap."""
    side = min(64, timm.get_pretrained_cfg(name).input_size[-1])
    return torch.randn(2, 3, side, side)


def _eval_model(name: str, **kwargs) -> torch.nn.Module:
    torch.manual_seed(0)
    return timm.create_model(name, **kwargs).eval()


@pytest.mark.parametrize("name", MODELS)
def test_default_cfg_and_head_api_on_the_meta_device(name):
    model = timm.create_model(name, device="meta").eval()
    cfg = model.pretrained_cfg
    state = model.state_dict()
    assert f"{cfg['classifier']}.weight" in state and state[f"{cfg['first_conv']}.weight"].shape[1] == 3
    assert model.num_classes == cfg["num_classes"] and cfg["input_size"][0] == 3
    grey = timm.create_model(name, device="meta", in_chans=1).state_dict()
    assert grey[f"{cfg['first_conv']}.weight"].shape[1] == 1
    assert {t.device.type for t in [*model.parameters(), *model.buffers()]} == {"meta"}
    with pytest.raises(TypeError):
        timm.create_model(name, device="meta", not_a_model_arg=1)
    if name != "mobilenetv2_100_extra_dw":  # timm's own EfficientNet: "avg" up to timm 1.0.30
        assert inspect.signature(model.reset_classifier).parameters["global_pool"].default is None

    x = torch.empty(1, *cfg["input_size"], device="meta")
    features = model.forward_features(x)
    assert features.shape[1] == model.num_features and tuple(features.shape[2:]) == cfg["pool_size"]
    pre_logits = model.forward_head(features, pre_logits=True)
    assert pre_logits.shape == (1, model.head_hidden_size)
    model.reset_classifier(0)  # keeps the pooling
    assert model.num_classes == 0 and model(x).shape == pre_logits.shape
    model.reset_classifier(0, "")  # no pooling: the feature map, as timm's models return it
    assert model(x).shape == features.shape
    assert timm.create_model(name, device="meta", num_classes=0)(x).shape == pre_logits.shape
    assert timm.create_model(name, device="meta", num_classes=0, global_pool="")(x).shape == features.shape


def _timm_owns_a_head_that_ignores_device(name: str) -> bool:
    """The extra-dw baseline is timm's EfficientNet, whose reset_classifier puts the new head on the default
    device and dtype before timm 1.0.21 (when its layers learnt ``device=``/``dtype=``)."""
    return name == "mobilenetv2_100_extra_dw" and "device" not in inspect.signature(EfficientNet).parameters


@pytest.mark.parametrize("name", MODELS)
def test_reset_classifier_keeps_device_dtype_mode_and_frozen_weights(name):
    if _timm_owns_a_head_that_ignores_device(name):
        pytest.skip(f"timm {timm.__version__}'s own EfficientNet.reset_classifier ignores the device and dtype")
    model = timm.create_model(name, device="meta").to(dtype=torch.float64).eval()
    model.reset_classifier(0)
    model.reset_classifier(3)
    head = list(model.get_classifier().parameters())
    assert head and all(p.device.type == "meta" and p.dtype == torch.float64 for p in head)
    assert not any(m.training for m in model.modules())

    frozen = timm.create_model(name, device="meta").requires_grad_(False)
    frozen.reset_classifier(0)
    frozen.reset_classifier(0, "")
    assert not any(p.requires_grad for p in frozen.parameters())
    assert timm.create_model(name, device="meta", dtype=torch.bfloat16).get_classifier().weight.dtype == torch.bfloat16


@pytest.mark.parametrize("name", MODELS)
def test_forward_backward_reaches_every_parameter(name):
    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=42).train()
    out = model(_small_input(name))
    assert out.shape == (2, 42) and torch.isfinite(out).all()
    out.mean().backward()
    assert [n for n, p in model.named_parameters() if p.grad is None] == []


# One model per code path runs by default: the other widths and paddings build the same modules.
DISTINCT = {"mobilenext_100", "mobilenext_100_half_id", "mobilenext_100_no_shortcut", "mobilenext_efficient_l",
            "mobilenext_efficient_xl_sympad", "mobilenetv2_100_extra_dw", "darts_cifar"}  # fmt: skip


@pytest.mark.parametrize("name", [n if n in DISTINCT else pytest.param(n, marks=pytest.mark.slow) for n in MODELS])
def test_torchscript_fx_and_fx_torchscript_equal_eager(name):
    model = _eval_model(name)
    x = _small_input(name)
    with torch.no_grad():
        expected = model(x)
        fx = create_feature_extractor(model, return_nodes=[get_graph_node_names(model)[1][-1]])
        forms = {"torchscript": torch.jit.script(model), "fx": fx, "fx+torchscript": torch.jit.script(fx)}
        for form, traced in forms.items():
            got = traced(x)
            got = next(iter(got.values())) if isinstance(got, dict) else got
            torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5, msg=f"{name} as {form}")


@pytest.mark.parametrize("name", [n for n in MODELS if n.startswith("mobilenext")] + ["darts_cifar"])
def test_features_only_and_forward_intermediates_agree(name):
    model = _eval_model(name)
    features = _eval_model(name, features_only=True)  # the same seed: the same weights
    x = _small_input(name)
    with torch.no_grad():
        final, intermediates = model.forward_intermediates(x)
        torch.testing.assert_close(final, model.forward_features(x))
        maps = features(x)
    assert [m.shape[1] for m in maps] == features.feature_info.channels() == [f["num_chs"] for f in model.feature_info]
    for ours, theirs in zip(intermediates, maps, strict=True):
        torch.testing.assert_close(ours, theirs)
    assert [x.shape[-1] // m.shape[-1] for m in maps] == features.feature_info.reduction()


@pytest.mark.parametrize("name", ["mobilenext_100_half_id", "mobilenext_efficient_l"])
def test_bfloat16_after_a_float_forward(name):
    model = _eval_model(name)
    x = _small_input(name)
    with torch.no_grad():
        model(x)
        assert model.to(torch.bfloat16)(x.to(torch.bfloat16)).dtype == torch.bfloat16


# ---- no private names of the libraries we build on ------------------------------------------------------
PACKAGE = Path(__file__).resolve().parents[1] / "src" / "mobilenext"
LIBRARIES = ("torch", "torchvision", "timm")


def _dotted(node: ast.AST) -> str | None:
    """``a.b.c`` for a chain of attribute accesses on a name, else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    return ".".join([node.id, *reversed(parts)]) if isinstance(node, ast.Name) else None


def _private_uses(path: Path, root: Path = PACKAGE) -> list[str]:
    """``file:line name`` of each private name (a component starting with ``_``, dunders aside) of torch,
    torchvision or timm that ``path`` imports or reaches through attributes."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = []
        if isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names = [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.Attribute):
            names = [_dotted(node) or ""]
        for name in names:
            parts = name.split(".")
            private = [p for p in parts[1:] if p.startswith("_") and not p.endswith("__")]
            if parts[0] in LIBRARIES and private:
                found.append(f"{path.relative_to(root)}:{node.lineno} {name}")
    return found


def test_every_module_imports_and_uses_no_private_name_of_torch_torchvision_or_timm():
    modules = sorted(PACKAGE.rglob("*.py"))
    for path in modules:  # each imports on its own (optional extras aside, which name themselves)
        name = ".".join(["mobilenext", *path.relative_to(PACKAGE).with_suffix("").parts]).removesuffix(".__init__")
        if name != "mobilenext.__main__":
            importlib.import_module(name)
    assert [use for path in modules for use in _private_uses(path)] == []


def test_the_private_name_check_finds_what_it_should(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from timm.models._efficientnet_blocks import SqueezeExcite\nimport torch\n"
        "tracing = torch.fx._symbolic_trace.is_fx_tracing()\nfrom torch import nn\nx = nn.__name__\n"
    )
    assert _private_uses(sample, tmp_path) == [
        "sample.py:1 timm.models._efficientnet_blocks.SqueezeExcite",
        "sample.py:3 torch.fx._symbolic_trace.is_fx_tracing",
        "sample.py:3 torch.fx._symbolic_trace",
    ]
