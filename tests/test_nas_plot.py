"""Pictures of NAS results: genotype cells and architecture-weight heatmaps, written as PNGs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from mobilenext._plot import pyplot
from mobilenext.errors import ConfigError, MobileNeXtError
from mobilenext.nas.genotypes import DARTS_V1, DARTS_V2, Genotype
from mobilenext.nas.operations import DARTS_OPS
from mobilenext.nas.plot import plot_alphas, plot_genotype

SANDGLASS_RED = np.array([214, 39, 40])  # the colour plot.py gives the sandglass block

# Two intermediate nodes only; the second reads node 0 twice (two ops on one pair of nodes).
STEPS_2 = Genotype(
    normal=(("sep_conv_5x5", 0), ("dil_conv_3x3", 1), ("skip_connect", 2), ("avg_pool_3x3", 2)),
    normal_concat=(2, 3),
    reduce=(("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 1), ("max_pool_3x3", 2)),
    reduce_concat=(2, 3),
)
SANDGLASS = Genotype(
    normal=(("sg_block_3x3", 0), ("sg_block_3x3", 1), ("ir_block_3x3", 0), ("sep_conv_3x3", 2),
            ("sg_block_3x3", 2), ("skip_connect", 3), ("none", 1), ("sg_block_3x3", 4)),
    normal_concat=(2, 3, 4, 5),
    reduce=(("max_pool_3x3", 0), ("sg_block_3x3", 1)),  # steps=1, and a concat that includes an input
    reduce_concat=(1, 2),
)  # fmt: skip


def _pixels(path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB")).astype(int)


def _assert_drawing(path, min_size=(400, 200)) -> np.ndarray:
    pixels = _pixels(path)
    height, width, _ = pixels.shape
    assert width >= min_size[0] and height >= min_size[1], pixels.shape
    assert width < 4000 and height < 3000, pixels.shape
    ink = (pixels.sum(axis=-1) < 740).mean()  # anything visibly darker than white
    assert ink > 0.03, f"only {ink:.1%} of the image is drawn on"
    return pixels


def _red_pixels(pixels: np.ndarray) -> int:
    return int((np.abs(pixels - SANDGLASS_RED).sum(axis=-1) < 40).sum())


def test_plot_genotype_writes_a_png(tmp_path):
    output = tmp_path / "darts_v2.png"
    assert plot_genotype(DARTS_V2, output, title="DARTS_V2") == output
    pixels = _assert_drawing(output, min_size=(1000, 300))
    assert pixels.shape[1] > pixels.shape[0]  # two cells side by side
    assert not list(tmp_path.glob(".*.tmp*"))  # the atomic write cleaned up


def test_different_genotypes_give_different_images(tmp_path):
    a, b = _pixels(plot_genotype(DARTS_V1, tmp_path / "v1.png")), _pixels(plot_genotype(DARTS_V2, tmp_path / "v2.png"))
    assert a.shape != b.shape or np.abs(a - b).sum(axis=-1).astype(bool).mean() > 0.01


@pytest.mark.parametrize("genotype", [STEPS_2, SANDGLASS], ids=["steps2", "sandglass"])
def test_other_wirings_draw(tmp_path, genotype):
    pixels = _assert_drawing(plot_genotype(genotype, tmp_path / "cell.png"))
    uses_sandglass = any(op == "sg_block_3x3" for op, _ in (*genotype.normal, *genotype.reduce))
    # The sandglass block has a colour of its own, and only it.
    assert (_red_pixels(pixels) > 200) == uses_sandglass


def test_plot_genotype_checks_the_genotype(tmp_path):
    bad = Genotype(
        normal=(("sep_conv_3x3", 0), ("sep_conv_3x3", 2)),
        normal_concat=(2,),
        reduce=DARTS_V2.reduce,
        reduce_concat=DARTS_V2.reduce_concat,
    )  # node 2 cannot read itself
    with pytest.raises(ConfigError, match="reads node 2"):
        plot_genotype(bad, tmp_path / "bad.png")


@pytest.mark.parametrize("draw", ["genotype", "alphas"])
def test_missing_folder_is_an_error_and_writes_nothing(tmp_path, draw):
    output = tmp_path / "missing" / "plot.png"
    figures = pyplot().get_fignums()
    with pytest.raises(MobileNeXtError, match="does not exist"):
        if draw == "genotype":
            plot_genotype(DARTS_V2, output)
        else:
            weights = np.full((14, len(DARTS_OPS)), 1 / len(DARTS_OPS))
            plot_alphas(weights, weights, DARTS_OPS, output)
    assert not output.parent.exists()
    assert list(tmp_path.iterdir()) == []
    assert pyplot().get_fignums() == figures  # the figure was closed, not leaked


def _softmax_weights(seed: int, edges: int = 14, ops: int = 9) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(edges, ops, generator=generator).softmax(dim=-1)


def test_plot_alphas_writes_a_heatmap(tmp_path):
    ops = [*DARTS_OPS, "sg_block_3x3"]
    normal = _softmax_weights(0).requires_grad_()  # straight from a search: a tensor that needs grad
    reduce = _softmax_weights(1).numpy()
    output = plot_alphas(normal, reduce, ops, tmp_path / "alphas.png", title="search")
    pixels = _assert_drawing(output, min_size=(800, 400))
    assert (pixels.sum(axis=-1) < 740).mean() > 0.3  # heatmaps fill most of the picture


def test_plot_alphas_other_steps(tmp_path):
    weights = _softmax_weights(2, edges=5, ops=4)  # steps=2: nodes read 2 and 3 inputs
    _assert_drawing(plot_alphas(weights, weights, DARTS_OPS[:4], tmp_path / "a.png", steps=2), min_size=(300, 150))


@pytest.mark.parametrize(
    "shape", [(13, 9), (14, 8), (15, 9), (14,), (2, 14, 9)], ids=["few-edges", "few-ops", "many-edges", "1d", "3d"]
)
def test_plot_alphas_rejects_wrong_shapes(tmp_path, shape):
    ops = [*DARTS_OPS, "sg_block_3x3"]
    good, bad = _softmax_weights(0), torch.rand(shape)
    for normal, reduce in ((bad, good), (good, bad)):
        with pytest.raises(ConfigError, match=r"expected \[14, 9\]") as error:
            plot_alphas(normal, reduce, ops, tmp_path / "alphas.png")
        assert isinstance(error.value, ValueError)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("steps", [0, -1])
def test_plot_alphas_rejects_bad_steps(tmp_path, steps):
    with pytest.raises(ConfigError, match="steps"):
        plot_alphas(_softmax_weights(0), _softmax_weights(1), DARTS_OPS, tmp_path / "a.png", steps=steps)


def test_plot_alphas_rejects_non_finite_weights(tmp_path):
    weights = _softmax_weights(0, ops=len(DARTS_OPS))
    weights[3, 2] = float("nan")
    with pytest.raises(ConfigError, match="NaN"):
        plot_alphas(weights, weights, DARTS_OPS, tmp_path / "a.png")
