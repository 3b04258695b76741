"""The shared training engine: what it owns once for every task (SyncBatchNorm, the NaN check over ranks)."""

from __future__ import annotations

import copy
import re
import textwrap

import pytest
import torch
from timm.layers import BatchNormAct2d
from torch import nn

from helpers import randomise_norms, torchrun
from mobilenext.detection.export import DetectorGraph
from mobilenext.detection.model import create_detector
from mobilenext.detection.shapes import write_shapes_voc
from mobilenext.engine.distributed import DistInfo
from mobilenext.engine.runner import prepare_model
from mobilenext.models.factory import create_model

TWO_RANKS = DistInfo(rank=0, local_rank=0, world_size=2, device=torch.device("cpu"))


def _bare_sync_bns(model: nn.Module) -> int:
    return sum(type(m) is nn.SyncBatchNorm for m in model.modules())


def _outputs(y) -> tuple[torch.Tensor, ...]:
    return y if isinstance(y, tuple) else (y,)


@pytest.mark.parametrize("name", ["ssdlite_mobilenext_035", "mobilenext_035", "mobilenetv2_035"])
def test_sync_bn_keeps_every_activation(name):
    torch.manual_seed(0)
    if name.startswith("ssdlite"):
        model = create_detector(name, num_classes=3, size=96)
        forward = DetectorGraph(model, 96)
    else:
        model = create_model(name, num_classes=5)
        forward = model
    randomise_norms(model)  # trained-looking statistics, so a lost ReLU6 shows in the outputs
    model.eval()
    x = torch.rand(2, 3, 96, 96)
    with torch.no_grad():
        before = forward(x)
    norms = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    norms_with_act = sum(isinstance(m, BatchNormAct2d) for m in model.modules())
    assert norms > 10

    converted = prepare_model(copy.deepcopy(model), TWO_RANKS, sync_bn=True).eval()
    synced = [m for m in converted.modules() if isinstance(m, nn.SyncBatchNorm)]
    assert len(synced) == norms and _bare_sync_bns(converted) == norms - norms_with_act
    assert not any(isinstance(m, nn.BatchNorm2d) for m in converted.modules())
    graph = DetectorGraph(converted, 96) if name.startswith("ssdlite") else converted
    with torch.no_grad():
        after = graph(x)
    for a, b in zip(_outputs(before), _outputs(after)):
        torch.testing.assert_close(b, a, rtol=0, atol=0)

    if name.startswith("mobilenetv2"):  # timm's layers: the case torch's own conversion gets wrong
        assert norms_with_act == norms
        lost = nn.SyncBatchNorm.convert_sync_batchnorm(copy.deepcopy(model)).eval()
        assert _bare_sync_bns(lost) == norms  # every activation dropped
        with torch.no_grad():
            assert not torch.allclose(lost(x), before)


_NAN_ON_RANK_1 = textwrap.dedent("""
    import os, sys, time
    import torch.distributed as dist
    from mobilenext.detection.engine import DetectionTask, parse_detect_args, train_detector
    from mobilenext.classification.config import parse_train_args
    from mobilenext.classification.train import ClassificationTask, train
    from mobilenext.errors import TrainingDiverged

    rank = int(os.environ["RANK"])
    out, voc = sys.argv[1], sys.argv[2]
    dist.init_process_group("gloo")  # the engine joins a group it did not create and leaves it alone

    def poison(task_type):
        step = task_type.training_step
        def poisoned(self, model, batch):
            result = step(self, model, batch)
            if rank == 1:
                result.loss = result.loss * float("nan")
            return result
        task_type.training_step = poisoned

    runs = {
        "classification": (ClassificationTask, lambda: train(parse_train_args([
            "--model", "mobilenext_035", "--img-size", "32", "-b", "16", "--epochs", "1", "--log-interval", "2",
            "--warmup-epochs", "0", "-j", "0", "--output", out + "/cls"]))),
        "detection": (DetectionTask, lambda: train_detector(parse_detect_args([
            "--model", "ssdlite_mobilenext_035", "--data", voc, "--classes", "square", "--train-sets",
            "2007/trainval", "--size", "96", "-b", "2", "--iterations", "8", "--eval-interval", "8",
            "--log-interval", "2", "--no-augment", "--pipeline", "torchvision", "-j", "0",
            "--output", out + "/det"]))),  # torchvision's pipeline: no OpenCV needed (the lowest-versions CI)
    }
    for name, (task_type, run) in runs.items():
        poison(task_type)
        start = time.monotonic()
        try:
            run()
            print(f"rank {rank} {name}: finished", flush=True)
        except TrainingDiverged as error:
            print(f"rank {rank} {name}: stopped after {time.monotonic() - start:.1f}s: {error}", flush=True)
    dist.barrier()  # both ranks are done with the group before either tears it down
    dist.destroy_process_group()
""")


def test_a_nan_loss_on_one_rank_stops_every_rank(tmp_path):
    """Rank 1's loss turns NaN; both ranks of a 2-process gloo run stop with the message (none waits forever
    in an all-reduce), in classification and in detection."""
    script = tmp_path / "nan_on_rank_1.py"
    script.write_text(_NAN_ON_RANK_1)
    voc = write_shapes_voc(tmp_path / "voc", train_images=8, test_images=2, classes=["square"])
    proc = torchrun(
        str(script),
        str(tmp_path),
        str(voc),
        timeout=240,
    )
    printed = proc.stdout + proc.stderr
    assert proc.returncode == 0, printed
    for task in ("classification", "detection"):
        for rank in (0, 1):
            found = re.search(
                rf"rank {rank} {task}: stopped after ([\d.]+)s: the training loss became NaN/inf at "
                r"(epoch|round) 0, step 1",
                printed,
            )
            assert found, printed
            assert float(found.group(1)) < 60  # seconds, set-up included; the old detection loop hung here
