"""DARTS search space with the sandglass op: operations, genotypes, the supernet and its alpha step, the
evaluation network, and the `mobilenext nas` commands on a small CIFAR-format dataset the tests write."""

from __future__ import annotations

import json
import sys

import pytest
import timm
import torch

from helpers import make_cifar10
from mobilenext.cli import main
from mobilenext.engine.config import config_from_args
from mobilenext.engine.runner import Runner
from mobilenext.errors import ConfigError
from mobilenext.models.sandglass import SandglassBlock
from mobilenext.nas import (
    DARTS_V2,
    OPS,
    Architect,
    Genotype,
    NetworkCIFAR,
    SearchNetwork,
    count_network_params,
    derive_genotype,
    load_genotype,
    resolve_ops,
    save_genotype,
)
from mobilenext.nas.search import SearchConfig, SearchTask
from mobilenext.nas.train import NasTrainConfig

# Two nodes per cell; every kind of operation with parameters appears once.
SMALL = Genotype(
    normal=(("sg_block_3x3", 0), ("sep_conv_3x3", 1), ("dil_conv_5x5", 2), ("skip_connect", 0)),
    normal_concat=(2, 3),
    reduce=(("ir_block_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 1), ("avg_pool_3x3", 2)),
    reduce_concat=(2, 3),
)
TINY_SEARCH = dict(batch_size=16, init_channels=4, layers=3, nodes=2, workers=0, channels_last=False)


@pytest.fixture(scope="module")
def cifar(tmp_path_factory):
    """5 x 40 training and 40 test images of 4 learnable classes in CIFAR-10's python format."""
    root = tmp_path_factory.mktemp("cifar")
    make_cifar10(root, per_batch=40, num_classes=4)
    return root


# ---- operations ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(OPS))
@pytest.mark.parametrize("stride", [1, 2])
def test_every_operation_keeps_channels_and_applies_the_stride(name, stride):
    op = OPS[name](8, stride, False).eval()
    assert op(torch.randn(2, 8, 12, 12)).shape == (2, 8, 12 // stride, 12 // stride)


def test_sandglass_op_is_the_sandglass_block():
    op = OPS["sg_block_3x3"](48, 1, True)
    assert isinstance(op, SandglassBlock) and op.has_shortcut  # stride 1: the block's own shortcut
    assert op.conv_reduce.conv.weight.shape == (8, 48, 1, 1)  # thin middle 48 / 6
    assert op.conv_dw1.conv.weight.shape == op.conv_dw2.conv.weight.shape == (48, 1, 3, 3)
    assert not OPS["sg_block_3x3"](48, 2, True).has_shortcut
    assert OPS["ir_block_3x3"](16, 1, True).conv_pw.weight.shape == (96, 16, 1, 1)  # MobileNetV2's 6x


def test_ops_flag_expands_presets_and_names_unknown_operations():
    assert resolve_ops(["darts+sg"])[-1] == "sg_block_3x3" and len(resolve_ops("darts+sg")) == 9
    assert resolve_ops(["darts", "ir_block_3x3", "none"]) == (*resolve_ops("darts"), "ir_block_3x3")
    with pytest.raises(ConfigError, match="unknown operation 'sg_block3x3'; did you mean 'sg_block_3x3'"):
        resolve_ops(["darts", "sg_block3x3"])
    with pytest.raises(ConfigError, match="besides 'none'"):
        resolve_ops(["none"])


# ---- genotypes ----------------------------------------------------------------------------------------------
def test_genotype_round_trips_through_json_and_darts_text(tmp_path):
    path = save_genotype(SMALL, tmp_path / "g.json", ops=list(OPS))
    assert load_genotype(path) == SMALL
    assert json.loads(path.read_text())["ops"] == list(OPS)
    (tmp_path / "bare.json").write_text(json.dumps(SMALL.to_dict()))
    assert load_genotype(tmp_path / "bare.json") == SMALL
    # DARTS's own notation, including its range(2, 6)
    text = str(DARTS_V2).replace("normal_concat=[2, 3, 4, 5]", "normal_concat=range(2, 6)")
    assert load_genotype(text) == DARTS_V2 == load_genotype("darts_v2")


def _hand_count(classes: int = 10) -> int:
    """SMALL at 4 initial channels and 3 cells, counted by hand. Stem 3 -> 12. Cells: 0 normal (C 4, inputs
    12 and 12, output 2 x 4 = 8), 1 reduction (C 8, inputs 12 and 8, output 16), 2 reduction after a
    reduction (C 16, inputs 8 and 16 with the first factorized-reduced, output 32). BN has 2 per channel."""

    def relu_conv_bn(cin, c):
        return cin * c + 2 * c

    def factorized_reduce(cin, c):
        return 2 * cin * (c // 2) + 2 * c

    def op(name, c, stride):
        dw_pw = {3: 9 * c + c * c + 2 * c, 5: 25 * c + c * c + 2 * c}
        r = max(8, c // 6)  # the sandglass middle, a multiple of 8 (C <= 48 here)
        return {
            "sep_conv_3x3": 2 * dw_pw[3],
            "dil_conv_5x5": dw_pw[5],
            "skip_connect": 0 if stride == 1 else factorized_reduce(c, c),
            "max_pool_3x3": 0,
            "avg_pool_3x3": 0,
            "sg_block_3x3": (9 * c + 2 * c) + (c * r + 2 * r) + (r * c + 2 * c) + (9 * c + 2 * c),
            "ir_block_3x3": (c * 6 * c + 12 * c) + (9 * 6 * c + 12 * c) + (6 * c * c + 2 * c),
        }[name]

    total = 3 * 12 * 9 + 2 * 12  # stem
    cells = [(12, 12, 4, False, False), (12, 8, 8, True, False), (8, 16, 16, True, True)]
    for prev_prev, prev, c, reduction, reduction_prev in cells:
        total += factorized_reduce(prev_prev, c) if reduction_prev else relu_conv_bn(prev_prev, c)
        total += relu_conv_bn(prev, c)
        edges = SMALL.reduce if reduction else SMALL.normal
        total += sum(op(name, c, 2 if reduction and node < 2 else 1) for name, node in edges)
    return total + 32 * classes + classes  # classifier on 2 x 16 channels


def test_network_from_a_genotype_has_the_hand_counted_parameters(tmp_path):
    model = timm.create_model(
        "darts_cifar", genotype=str(save_genotype(SMALL, tmp_path / "g.json")), init_channels=4, layers=3
    )
    assert count_network_params(model) == _hand_count()
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_darts_v2_has_the_published_parameter_count():
    model = NetworkCIFAR(DARTS_V2, init_channels=36, layers=20, auxiliary=True)
    assert count_network_params(model) == 3_349_342  # DARTS's train.py log: "param size = 3.349342MB"
    model.train()
    logits, aux_logits = model(torch.randn(2, 3, 32, 32))
    assert logits.shape == aux_logits.shape == (2, 10)
    assert model.eval()(torch.randn(2, 3, 32, 32)).shape == (2, 10)  # evaluation: logits only


def test_derivation_keeps_the_two_strongest_inputs_ignoring_none():
    ops = ["none", "skip_connect", "sep_conv_3x3"]
    # One node (steps=1), two inputs; then a second node with three inputs (steps=2).
    normal = torch.tensor(
        [
            [0.9, 0.05, 0.05],  # node 2 <- 0: 'none' is strongest but never chosen
            [0.1, 0.2, 0.7],  # node 2 <- 1
            [0.1, 0.6, 0.3],  # node 3 <- 0
            [0.0, 0.1, 0.9],  # node 3 <- 1  (strongest)
            [0.2, 0.1, 0.7],
        ]
    )  # node 3 <- 2  (beats 0.6)
    genotype = derive_genotype(normal, normal, ops, steps=2)
    assert genotype.normal == (("skip_connect", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 1), ("sep_conv_3x3", 2))
    assert genotype.normal_concat == (2, 3)


@pytest.mark.parametrize(("content", "message"), [
    ("{not json", "is not valid JSON"),
    ('{"normal": []}', "expected a JSON object with keys normal, normal_concat, reduce, reduce_concat"),
    (json.dumps({**SMALL.to_dict(), "normal": [["sg_block_5x5", 0], ["sep_conv_3x3", 1]] * 2}),
     "unknown operation 'sg_block_5x5'; did you mean 'sg_block_3x3'"),
    (json.dumps({**SMALL.to_dict(), "normal": [["sep_conv_3x3", 0], ["sep_conv_3x3", 3]]}),
     "edge 1 \\(sep_conv_3x3\\) reads node 3, but intermediate node 2 can only read nodes 0..1"),
    (json.dumps({**SMALL.to_dict(), "normal": [["sep_conv_3x3", 0]]}), "two per node"),
    (json.dumps({**SMALL.to_dict(), "reduce_concat": [2, 7]}), "reduce_concat must list distinct nodes among 0..3"),
])  # fmt: skip
def test_bad_genotype_files_get_one_sentence(tmp_path, capsys, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message):
        load_genotype(path)
    assert main(["nas", "show", "--genotype", str(path), "-o", ""]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("mobilenext nas: error:") and len(error.splitlines()) == 1


@pytest.mark.parametrize(("args", "message"), [
    (["nas", "show", "--channels", "0"], "--channels: expected an integer >= 1, got '0'"),
    (["nas", "show", "--layers", "2"], "at least 3 cells"),
    (["nas", "search", "--data", "CIFAR", "--nodes", "0"], "--nodes: expected an integer >= 1, got '0'"),
])  # fmt: skip
def test_impossible_network_sizes_get_one_sentence(cifar, capsys, args, message):
    args = [str(cifar) if a == "CIFAR" else a for a in args]
    try:  # a flag out of range stops in argparse (SystemExit 2), an impossible network in the library (return 2)
        code = main([*args, "-o" if args[1] == "show" else "--epochs", "" if args[1] == "show" else "1"])
    except SystemExit as e:
        code = e.code
    assert code == 2
    error = capsys.readouterr().err.strip()
    assert message in error and len(error.splitlines()) == 1


def test_unknown_genotype_name():
    with pytest.raises(ConfigError, match="neither a built-in \\(DARTS_V1, DARTS_V2, DARTS\\) nor an existing"):
        load_genotype("DARTS_V3")


# ---- the alpha step -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("hessian", "radius"), [("exact", None), ("finite-difference", 1e-6)])
def test_second_order_gradient_equals_finite_differences(hessian, radius):
    """The unrolled gradient d L_val(w - xi grad_w L_train(w, a), a) / d a against central differences of that
    very objective, on a toy supernet in float64 with momentum and weight decay in the virtual step. DARTS's
    own finite-difference Hessian agrees when its radius is small (at its 0.01 this toy is too curved)."""
    torch.manual_seed(0)
    ops = ("none", "skip_connect", "avg_pool_3x3", "sep_conv_3x3", "sg_block_3x3")
    model = SearchNetwork(init_channels=4, num_classes=3, layers=3, steps=1, multiplier=1, ops=ops).double()
    with torch.no_grad():
        for alpha in model.arch_parameters():
            alpha.normal_(0, 0.5)
    train = (torch.randn(6, 3, 8, 8, dtype=torch.float64), torch.tensor([0, 1, 2, 0, 1, 2]))
    val = (torch.randn(6, 3, 8, 8, dtype=torch.float64), torch.tensor([2, 1, 0, 0, 2, 1]))
    optimizer = torch.optim.SGD(model.weight_parameters(), lr=0.5, momentum=0.9, weight_decay=3e-4)
    torch.nn.functional.cross_entropy(model(train[0]), train[1]).backward()
    optimizer.step()  # a momentum buffer for the virtual step to include
    architect = Architect(model, second_order=True, hessian=hessian, radius=radius or 0.01)
    xi = 0.5

    analytic, _ = architect.unrolled_gradient(train, val, xi, optimizer)
    h = 1e-5
    for alpha, grad in zip(model.arch_parameters(), analytic):
        numeric = torch.zeros_like(alpha)
        for index in range(alpha.numel()):
            with torch.no_grad():
                alpha.view(-1)[index] += h
            plus = architect.unrolled_val_loss(train, val, xi, optimizer)
            with torch.no_grad():
                alpha.view(-1)[index] -= 2 * h
            minus = architect.unrolled_val_loss(train, val, xi, optimizer)
            with torch.no_grad():
                alpha.view(-1)[index] += h
            numeric.view(-1)[index] = (plus - minus) / (2 * h)
        torch.testing.assert_close(grad, numeric, rtol=1e-3, atol=1e-6)
    # ... and the second-order term matters here: the first-order gradient is clearly different.
    first_order = torch.autograd.grad(torch.nn.functional.cross_entropy(model(val[0]), val[1]), model.arch_parameters())
    gap = sum((a - f).norm() for a, f in zip(analytic, first_order))
    assert gap > 0.05 * sum(f.norm() for f in first_order)


def test_virtual_steps_leave_the_model_untouched():
    torch.manual_seed(0)
    model = SearchNetwork(init_channels=4, num_classes=3, layers=3, steps=1, multiplier=1, ops=("none", "sep_conv_3x3"))
    optimizer = torch.optim.SGD(model.weight_parameters(), lr=0.1, momentum=0.9)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    batch = (torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 0]))
    Architect(model, lr=0.0, weight_decay=0.0).step(batch, batch, 0.1, optimizer)  # lr 0: alpha stays too
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key  # weights and BN running statistics


# ---- search -------------------------------------------------------------------------------------------------
def test_search_moves_alpha_and_lowers_the_validation_loss(cifar, tmp_path):
    cfg = SearchConfig(data=str(cifar), epochs=3, unrolled=False, output=str(tmp_path / "run"), **TINY_SEARCH)
    runner = Runner(SearchTask, cfg)
    searcher = runner.task
    start_alphas = [a.detach().clone() for a in searcher.model.arch_parameters()]
    start_val = searcher.evaluate()["val_loss"]
    result = runner.run()

    moved = max((a.detach() - s).abs().max().item() for a, s in zip(searcher.model.arch_parameters(), start_alphas))
    assert moved > 1e-3  # Adam at lr 3e-4 moves each entry by about 3e-4 per step; 18 steps
    assert result["val_loss"] < 0.9 * start_val
    saved = json.loads((tmp_path / "run" / "genotype.json").read_text())
    assert load_genotype(tmp_path / "run" / "genotype.json") == searcher.model.genotype() == result["genotype"]
    assert saved["ops"] == list(resolve_ops("darts+sg")) and len(saved["weights"]["normal"]) == 5
    for png in ("genotype.png", "alphas.png"):
        assert (tmp_path / "run" / png).read_bytes()[:4] == b"\x89PNG"
    rows = (tmp_path / "run" / "summary.csv").read_text().splitlines()
    assert rows[0].startswith("epoch,train_loss,train_acc,val_loss,val_acc") and len(rows) == 4


def test_interrupted_search_resumes_exactly(cifar, tmp_path):
    common = dict(data=str(cifar), unrolled=False, **TINY_SEARCH)
    whole = Runner(SearchTask, SearchConfig(epochs=2, output=str(tmp_path / "whole"), **common))
    whole.run()
    cut = Runner(SearchTask, SearchConfig(epochs=2, output=str(tmp_path / "cut"), **common))
    batches = cut.task.batches

    def killed_in_epoch_1(index):
        if index == 1:
            raise KeyboardInterrupt
        return batches(index)

    cut.task.batches = killed_in_epoch_1
    with pytest.raises(KeyboardInterrupt):
        cut.run()
    resumed = Runner(SearchTask, SearchConfig(epochs=2, output=str(tmp_path / "cut"), resume="auto", **common))
    resumed.run()
    assert "1 of 2 epochs done" in (tmp_path / "cut" / "log.txt").read_text()
    for a, b in zip(whole.task.model.state_dict().values(), resumed.task.model.state_dict().values()):
        assert torch.equal(a, b)
    for record in ("summary.csv", "genotypes.txt"):
        whole_rows = (tmp_path / "whole" / record).read_text().splitlines()
        cut_rows = (tmp_path / "cut" / record).read_text().splitlines()
        assert len(whole_rows) == len(cut_rows) and whole_rows[-1].split(",")[:5] == cut_rows[-1].split(",")[:5]


@pytest.mark.slow  # the sandglass space's search covers the CLI; test_timm_contract runs the IR op's network
def test_search_cli_with_the_inverted_residual_space(cifar, tmp_path, capsys):
    out = tmp_path / "ir"
    args = [
        "nas",
        "search",
        "--data",
        str(cifar),
        "--ops",
        "darts+ir",
        "--epochs",
        "1",
        "-b",
        "16",
        "--init-channels",
        "4",
        "--layers",
        "3",
        "--nodes",
        "2",
        "-j",
        "0",
        "--output",
        str(out),
    ]
    assert main(args) == 0
    genotype = load_genotype(out / "genotype.json")
    assert {op for op, _ in genotype.normal + genotype.reduce} <= set(resolve_ops("darts+ir")) - {"none"}
    assert "second order (unrolled, exact Hessian)" in capsys.readouterr().out


def test_without_matplotlib_search_writes_all_but_pictures(cifar, tmp_path, monkeypatch, capsys, caplog):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if `pip install mobilenext` without [plot]
    out = tmp_path / "run"
    Runner(SearchTask, SearchConfig(data=str(cifar), epochs=1, unrolled=False, output=str(out), **TINY_SEARCH)).run()
    assert load_genotype(out / "genotype.json") and not (out / "genotype.png").exists()
    assert "no cell pictures: matplotlib is not installed" in caplog.text
    assert main(["nas", "show", "-o", str(tmp_path / "cells.png")]) == 2
    assert "pip install 'mobilenext[plot]'" in capsys.readouterr().err


def test_cifar_folder_with_missing_batches(tmp_path, capsys):
    make_cifar10(tmp_path, per_batch=4, drop=("data_batch_2", "data_batch_4"))
    assert main(["nas", "search", "--data", str(tmp_path), "--output", str(tmp_path / "run")]) == 2
    error = capsys.readouterr().err.strip()
    assert "incomplete cifar10 folder: missing data_batch_2, data_batch_4" in error and len(error.splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_nas_train_needs_cifar(capsys):
    assert main(["nas", "train", "--epochs", "1"]) == 2
    assert "nas train runs on CIFAR: pass --data" in capsys.readouterr().err


@pytest.mark.parametrize("make", ["nothing", "not_cifar"])
def test_search_needs_a_cifar_folder(tmp_path, capsys, make):
    if make == "not_cifar":
        (tmp_path / "data").mkdir()
        (tmp_path / "data" / "readme.txt").write_text("hello")
    assert main(["nas", "search", "--data", str(tmp_path / "data")]) == 2
    assert ("does not exist" if make == "nothing" else "holds no CIFAR python batches") in capsys.readouterr().err


# ---- evaluation network training ----------------------------------------------------------------------------
def test_darts_recipes_load_with_their_settings():
    train = config_from_args({"config": "darts_cifar10", "data": "x"}, schema=NasTrainConfig)
    assert (train.epochs, train.batch_size, train.lr, train.sched) == (600, 96, 0.025, "cosine")
    assert (train.weight_decay, train.weight_decay_all, train.clip_grad, train.smoothing) == (3e-4, True, 5.0, 0.0)
    assert (train.init_channels, train.layers, train.auxiliary, train.cutout) == (36, 20, True, 16)
    assert (train.auxiliary_weight, train.drop_path, train.genotype) == (0.4, 0.2, "DARTS_V2")
    search = config_from_args({"config": "darts_search_cifar10"}, schema=SearchConfig)
    assert search == SearchConfig()  # the defaults are DARTS's search recipe


def test_nas_train_then_validate_reproduces_the_logged_accuracy(cifar, tmp_path, capsys):
    genotype = save_genotype(SMALL, tmp_path / "g.json")
    out = tmp_path / "run"
    assert (
        main(
            [
                "nas",
                "train",
                "--data",
                str(cifar),
                "--genotype",
                str(genotype),
                "--epochs",
                "2",
                "-b",
                "16",
                "--init-channels",
                "4",
                "--layers",
                "5",
                "-j",
                "0",
                "--output",
                str(out),
            ]
        )
        == 0
    )
    log = capsys.readouterr().out
    assert f"{count_network_params(NetworkCIFAR(SMALL, 4, 5, auxiliary=True)):,} params without the auxiliary" in log
    record = torch.load(out / "last.pth", weights_only=True)
    assert load_genotype(record["model_kwargs"]["genotype"]) == SMALL and record["args"]["cutout"] == 16
    assert main(["validate", str(out / "best.pth"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["top1"] == pytest.approx(result["logged"]["eval_prec1"])
    # resuming the run with another genotype would load weights into the wrong cells: refused
    assert (
        main(
            [
                "nas",
                "train",
                "--data",
                str(cifar),
                "--genotype",
                "DARTS_V2",
                "--epochs",
                "3",
                "-b",
                "16",
                "--init-channels",
                "4",
                "--layers",
                "5",
                "-j",
                "0",
                "--output",
                str(out),
                "--resume",
                "auto",
            ]
        )
        == 2
    )
    error = capsys.readouterr().err.strip()
    assert "was trained with another genotype" in error and len(error.splitlines()) == 1


def test_nas_show_counts_and_draws(tmp_path, capsys):
    assert main(["nas", "show", "--genotype", "DARTS_V2", "-o", str(tmp_path / "v2.png")]) == 0
    out = capsys.readouterr().out
    assert "3,349,342 params" in out and (tmp_path / "v2.png").read_bytes()[:4] == b"\x89PNG"
    assert (
        main(["nas", "show", "--genotype", str(SMALL), "--channels", "4", "--layers", "3", "--auxiliary", "-o", ""])
        == 0
    )
    assert f"{_hand_count():,} params" in capsys.readouterr().out
