"""Training, evaluation and prediction of the SSDLite detectors: ``mobilenext detect train|eval|predict``.

Training counts iterations, not epochs, as the SSD recipes do (VOC: 240k iterations of batch 24, lr x0.1
at 160k and 200k). :class:`DetectionTask` is a task of the shared engine (:mod:`mobilenext.engine.runner`),
which runs the loop, checkpoints, resume and DDP; a round is ``eval_interval`` iterations. Evaluation runs
on rank 0 (the VOC 2007 test set is 4,952 images) while the other ranks wait.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
from dataclasses import dataclass
from typing import Any

import torch
from timm.optim import create_optimizer_v2
from torch import nn
from torch.utils.data import DataLoader, SequentialSampler

from ..checks import Number
from ..data.datasets import TolerantDataset
from ..data.loader import Reseeded, ResumableSampler, default_workers, loader_generator
from ..engine.config import (
    BATCH,
    COUNT,
    FRACTION,
    IMAGE_SIZE,
    ITERATIONS,
    NONNEG,
    NONNEG_INT,
    OPTIMIZER,
    POSITIVE,
    SWITCH,
    DataParallelSettings,
    add_config_arguments,
    config_from_args,
    setting,
)
from ..engine.distributed import DistInfo
from ..engine.progress import Progress
from ..engine.records import Curves
from ..engine.runner import Runner, Step, Task, run_task
from ..errors import ConfigError, require
from .data import collate_detection, open_detection_data
from .metrics import DetectionEvaluator
from .model import create_detector
from .settings import LOSSES, NORMALIZATIONS, post_processing, ssd_keywords
from .transforms import PIPELINES

__all__ = [
    "DetectionConfig",
    "DetectionTask",
    "detection_loader",
    "evaluate_detector",
    "parse_detect_args",
    "train_detector",
]

log = logging.getLogger("mobilenext")

SUMMARY_COLUMNS = ("iteration", "train_loss", "bbox_loss", "cls_loss", "lr")


@dataclass
class DetectionConfig(DataParallelSettings):
    model: str = setting(
        "ssdlite320_mobilenext_100",
        "detector: ssdlite320_mobilenext_100, ssdlite320_mobilenetv2_100, or ssdlite_<backbone> with --size",
    )
    backbone_checkpoint: str | None = setting(
        None, "classification weights for the backbone (ours, timm's, the authors')"
    )
    size: int = setting(320, "input size (the anchors are the authors' at 320)", **IMAGE_SIZE)
    boxes: str = setting(
        "voc",
        "the authors' default boxes: those of their VOC or COCO configs (COCO: other max "
        "sizes, 4 boxes on the last map)",
        choices=("voc", "coco"),
    )
    loss: str = setting(
        "softmax", "softmax (cross-entropy with 3:1 hard-negative mining: the authors' VOC loss) or focal (their "
        "COCO loss: sigmoid focal, per-class sigmoid scores)", choices=LOSSES,
    )  # fmt: skip
    data: str | None = setting(None, "VOC root (holding VOCdevkit/) or COCO root (annotations/instances_*.json)")
    dataset: str = setting("auto", "dataset format", choices=("auto", "voc", "coco"))
    train_sets: tuple[str, ...] = setting(
        ("2007/trainval", "2012/trainval"),
        "VOC YEAR/SET lists to train on (those present are used); COCO: the split name",
        nargs="+",
    )
    test_set: str = setting("2007/test", "VOC YEAR/SET or COCO split to evaluate on")
    classes: tuple[str, ...] | None = setting(
        None,
        "class names of a VOC-format dataset (default: the 20 VOC classes; COCO reads them from its json)",
        nargs="+",
    )
    batch_size: int = setting(24, "images per batch and process", "-b", "--batch-size", **BATCH)
    iterations: int = setting(240_000, "training iterations", **ITERATIONS)
    lr: float = setting(1e-3, "learning rate", **POSITIVE)
    lr_scaling: str = setting(
        "none",
        "world: lr x processes and iterations/steps / processes, as the authors' train.py does under DDP",
        choices=("none", "world"),
    )
    lr_schedule: str = setting(
        "multistep", "multistep (x lr_gamma at lr_steps) or cosine (to 0 at the last iteration)",
        choices=("multistep", "cosine"),
    )  # fmt: skip
    lr_steps: tuple[int, ...] = setting(
        (160_000, 200_000), "iterations at which lr is multiplied by lr_gamma", nargs="+", **COUNT
    )
    lr_gamma: float = setting(0.1, "lr decay factor at each step", type=Number(float, 0, 1, low_open=True))
    warmup_iterations: int = setting(500, "linear lr warm-up iterations", **NONNEG_INT)
    warmup_factor: float = setting(1 / 3, "lr multiplier at the start of warm-up", type=Number(float, 0, 1))
    opt: str = setting("momentum", "timm optimizer name (momentum: SGD without Nesterov, as the authors'; sgd "
                       "is Nesterov's; adamw, ...)", **OPTIMIZER)  # fmt: skip
    momentum: float = setting(0.9, "SGD momentum", **FRACTION)
    weight_decay: float = setting(5e-4, "weight decay", **NONNEG)
    weight_decay_all: bool = setting(
        True, "weight decay on every parameter, norms and biases too, as the authors' SGD", **SWITCH
    )
    normalize: str = setting(
        "authors", "input normalisation: authors (mean 123/117/104 of 255, ImageNet std) or imagenet (timm's)",
        choices=NORMALIZATIONS,
    )  # fmt: skip
    score_thresh: float | None = setting(
        None, "test: keep boxes scoring above this (default: the authors' for --loss: 0.01 softmax, 0.05 focal)",
        type=Number(float, 0, 1),
    )  # fmt: skip
    nms_thresh: float | None = setting(
        None, "test: per-class NMS IoU (default: the authors' for --loss: 0.45 softmax, 0.5 focal)",
        type=Number(float, 0, 1),
    )  # fmt: skip
    detections_per_img: int | None = setting(None, "test: boxes kept per image (default: 100)", **COUNT)
    augment: bool = setting(
        True,
        "SSD augmentation: photometric distortion, zoom-out, min-IoU crop, flip "
        "(--no-augment: flip only, for quick runs)",
        **SWITCH,
    )
    pipeline: str = setting(
        "authors",
        "data pipeline: authors (their SSD transforms: additive brightness, unclipped floats, no 0.5 IoU crop "
        "mode, resize without antialiasing, VOC boxes minus 1, COCO images without annotations left out) or "
        "torchvision (its detection references' transforms)",
        choices=PIPELINES,
    )
    eval_interval: int = setting(10_000, "iterations between evaluations and checkpoints", **COUNT)

    def with_test_settings(self) -> DetectionConfig:
        """These settings with the test-time ones the run leaves unset filled in for its loss
        (:func:`~mobilenext.detection.settings.post_processing`), so args.yaml and the checkpoints say them."""
        given = {"score_thresh": self.score_thresh, "nms_thresh": self.nms_thresh}
        resolved = post_processing(self.loss, detections_per_img=self.detections_per_img, **given)
        return dataclasses.replace(self, **resolved.to_dict())


def parse_detect_args(argv: list[str]) -> DetectionConfig:
    """Parse a ``mobilenext detect train`` command line (for scripts and tests)."""
    parser = argparse.ArgumentParser(prog="mobilenext detect train")
    add_config_arguments(parser, DetectionConfig)
    return config_from_args(parser.parse_args(argv), DetectionConfig)


def detection_loader(dataset, batch_size: int, workers: int, train: bool, dist: DistInfo, seed: int) -> DataLoader:
    """Batches of a detection split; in training shuffled by ``(seed, epoch)`` and each sample augmented by
    ``(seed, epoch, index)`` (:class:`~mobilenext.data.loader.Reseeded`), so that a run resumed mid-epoch sees
    exactly the batches the uninterrupted one saw, with any number of workers, which persist across epochs."""
    dataset = TolerantDataset(dataset, substitute=train)
    sampler = ResumableSampler(len(dataset), seed, dist.rank, dist.world_size) if train else SequentialSampler(dataset)
    return DataLoader(
        Reseeded(dataset, seed) if train else dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate_detection,
        drop_last=train,
        pin_memory=dist.device.type == "cuda",
        persistent_workers=train and workers > 0,
        generator=loader_generator(seed),
    )


# --- evaluation ------------------------------------------------------------------------------------------
@torch.no_grad()
def evaluate_detector(
    model: nn.Module,
    loader: DataLoader,
    classes: tuple[str, ...],
    metric: str,
    device: torch.device,
    progress: bool = True,
) -> dict[str, Any]:
    """Detections on every image of ``loader``, scored with VOC mAP@0.5 or COCO AP; also counts skipped images."""
    model.eval()
    evaluator = DetectionEvaluator(len(classes), class_names=list(classes), metric=metric)
    skipped: list[str] = []
    bar = Progress(len(loader), "evaluate", enabled=progress, interval=max(20, len(loader) // 5))
    for images, targets, problems in loader:
        skipped += problems
        if images:
            outputs = model([image.to(device, non_blocking=True) for image in images])
            evaluator.update([{k: v.cpu() for k, v in out.items()} for out in outputs], targets)
        bar.update(len(images))
    bar.close()
    return {**evaluator.compute(), "images": bar.images, "skipped": len(skipped), "skipped_names": skipped}


def _headline(metrics: dict[str, Any]) -> str:
    keys = ("map50", "map50_voc07", "ap", "ap50", "ap75")
    return "  ".join(f"{k} {100 * metrics[k]:.2f}%" for k in keys if k in metrics)


# --- training --------------------------------------------------------------------------------------------
def lr_factor(
    iteration: int,
    warmup: int,
    steps: tuple[int, ...],
    gamma: float,
    warmup_factor: float = 1 / 3,
    cosine_over: int | None = None,
) -> float:
    """The authors' schedules (their ``ssd/solver/lr_scheduler.py``): a linear warm-up from ``warmup_factor``
    over ``warmup`` iterations, times either ``gamma`` per step passed or, with ``cosine_over``, a cosine from
    1 to 0 over that many iterations (counted from 0, not from the end of warm-up)."""
    if cosine_over is not None:
        decay = 0.5 * (1 + math.cos(math.pi * iteration / cosine_over))
    else:
        decay = gamma ** sum(iteration >= step for step in steps)
    if iteration < warmup:
        return decay * (warmup_factor + (1 - warmup_factor) * iteration / warmup)
    return decay


class DetectionTask(Task):
    """SSDLite training: a round is ``eval_interval`` iterations, then VOC mAP / COCO AP on rank 0."""

    name = "detection"
    length_setting = "iterations"
    round_name = "round"
    position = "iteration"
    summary_columns = SUMMARY_COLUMNS
    curves = Curves(
        "detection",
        "mobilenext detect train",
        ("iteration", "train_loss", "bbox_loss", "cls_loss"),
        "iteration",
        (("train_loss", "total"), ("bbox_loss", "bbox"), ("cls_loss", "cls")),
        # COCO rows also hold map50 (= ap50), but AP@[.5:.95] is their headline; a VOC run next to a COCO
        # run falls back to the mAP@0.5 they share, so the curves stay comparable. VOC07 11-point first: the
        # authors' evaluator reports it (benchmarks/detection_vs_authors.py writes their log as such rows).
        (("ap", "COCO AP@[.5:.95]"), ("map50_voc07", "VOC07 mAP@0.5"), ("map50", "mAP@0.5")),
        "{} (%)",
        "training loss (total = bbox + cls)",
        "held-out mAP",
        percent=100.0,
        one_score=True,
    )
    score_name = "mAP@0.5"
    score_scale = 100.0
    divergence_hint = "Lower --lr or lengthen --warmup-iterations."
    cfg: DetectionConfig

    def __init__(self, cfg: DetectionConfig, runner: Runner) -> None:
        runner.cfg = cfg = cfg.with_test_settings()
        if cfg.pipeline == "authors":  # its evaluation resizes with OpenCV: say so now, not after a round
            require("cv2", "detection")
        super().__init__(cfg, runner)
        dist = self.dist = runner.dist
        self.device = runner.device
        self.data = open_detection_data(
            cfg.data, cfg.dataset, cfg.train_sets, cfg.test_set, cfg.size, cfg.classes, cfg.augment, cfg.pipeline
        )
        if len(self.data.train) < cfg.batch_size * dist.world_size:
            raise ConfigError(
                f"{len(self.data.train)} training images do not fill one batch of "
                f"{cfg.batch_size} x {dist.world_size}; lower --batch-size."
            )
        model = create_detector(
            cfg.model,
            len(self.data.classes) + 1,
            size=cfg.size,
            boxes=cfg.boxes,
            loss=cfg.loss,
            backbone_checkpoint=cfg.backbone_checkpoint,
            pipeline=cfg.pipeline,
            **ssd_keywords(cfg.to_dict()),
        )
        self.model = runner.prepare_model(model)
        # The authors' train.py under G processes: lr x G, iterations and steps / G (warm-up unchanged).
        scale = dist.world_size if cfg.lr_scaling == "world" else 1
        self.lr, self.iterations = cfg.lr * scale, cfg.iterations // scale
        steps = tuple(step // scale for step in cfg.lr_steps)
        cosine = self.iterations if cfg.lr_schedule == "cosine" else None
        self.optimizer = create_optimizer_v2(
            self.model, cfg.opt, lr=self.lr, weight_decay=cfg.weight_decay, momentum=cfg.momentum,
            filter_bias_and_bn=not cfg.weight_decay_all,
        )  # fmt: skip
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            lambda it: lr_factor(it, cfg.warmup_iterations, steps, cfg.lr_gamma, cfg.warmup_factor, cosine),
        )
        workers = default_workers() if cfg.workers is None else cfg.workers
        self.train_loader = detection_loader(self.data.train, cfg.batch_size, workers, True, dist, cfg.seed)
        self.test_loader = detection_loader(self.data.test, max(1, cfg.batch_size // 2), workers, False, dist, cfg.seed)
        self.iteration = 0

    def identity(self) -> dict[str, Any]:
        cfg = self.cfg
        return {
            "model": cfg.model,
            "classes": list(self.data.classes),
            "size": cfg.size,
            "boxes": cfg.boxes,
            "loss": cfg.loss,
        }

    def finished(self, rounds: int) -> bool:
        return self.iteration >= self.iterations

    def _round_end(self) -> int:
        """The iteration this round stops at: the next multiple of eval_interval, or the last."""
        interval = self.cfg.eval_interval
        return min((self.iteration // interval + 1) * interval, self.iterations)

    def steps(self, index: int) -> int:
        return self._round_end() - self.iteration

    def batches(self, index: int):
        """Batches from the current iteration to the round's end, epoch after epoch; a resumed run starts
        mid-epoch exactly where the interrupted one was (the sampler skips what was done)."""
        stop, sampler, batch = self._round_end(), self.train_loader.sampler, self.cfg.batch_size
        epoch, done = divmod(self.iteration, sampler.per_rank // batch)
        while self.iteration < stop:
            sampler.set_epoch(epoch, skip=done * batch)
            for item in self.train_loader:
                if self.iteration >= stop:
                    return
                yield item
            epoch, done = epoch + 1, 0

    def training_step(self, model: nn.Module, batch) -> Step:
        images, targets, problems = batch
        images = [image.to(self.device, non_blocking=True) for image in images]
        targets = [{"boxes": t["boxes"].to(self.device), "labels": t["labels"].to(self.device)} for t in targets]
        losses = model(images, targets)
        loss = losses["bbox_regression"] + losses["classification"]
        n = len(images)
        sums = {
            "train_loss": loss.detach() * n,
            "bbox_loss": losses["bbox_regression"].detach() * n,
            "cls_loss": losses["classification"].detach() * n,
        }
        return Step(loss, n, sums, problems)

    def after_step(self) -> None:
        self.iteration += 1
        self.scheduler.step()

    def evaluate(self) -> dict[str, Any]:
        """On rank 0 only (the other ranks wait at the barrier that ends the round)."""
        if not self.dist.is_main:
            return {}
        metrics = evaluate_detector(self.model, self.test_loader, self.data.classes, self.data.kind, self.device)
        return {**metrics, "score": metrics["map50"]}

    def summary_row(self, index: int, train: dict, metrics: dict, seconds: float) -> dict[str, Any]:
        return {
            "iteration": self.iteration,
            **{k: train[k] for k in ("train_loss", "bbox_loss", "cls_loss")},
            "lr": self.optimizer.param_groups[0]["lr"],
            **{k: v for k, v in metrics.items() if isinstance(v, float) and k != "score"},
            "round_time": round(seconds, 2),
            "train_img_per_sec": round(train["img_per_sec"], 1),
            "skipped_images": train["skipped"] + metrics["skipped"],
        }

    def round_line(self, row: dict[str, Any]) -> str:
        return (
            f"iteration {row['iteration']:,}/{self.iterations:,}  loss {row['train_loss']:.4f}  "
            f"{_headline(row)}  lr {row['lr']:.3g}  {row['round_time']:.1f}s"
        )

    def memory_probe(self) -> tuple[nn.Module, tuple[int, ...], int, str]:
        size = self.cfg.size  # the feature trunk: the heads' activations are a small part
        return self.model.backbone, (3, size, size), self.cfg.batch_size, "--batch-size or --size"

    def describe(self) -> str:
        cfg = self.cfg
        return (
            f"{cfg.model} on {self.data.description}; {self.iterations:,} iterations of batch {cfg.batch_size} "
            f"x {self.dist.world_size} process(es); device {self.device}; output {self.runner.output}"
        )

    def progress_text(self) -> str:
        return f"iteration {self.iteration:,}"

    def state(self) -> dict[str, Any]:
        cfg = self.cfg
        return {"classes": list(self.data.classes), "size": cfg.size, "boxes": cfg.boxes, "loss": cfg.loss,
                "iteration": self.iteration}  # fmt: skip

    def load_state(self, state: dict[str, Any]) -> None:
        self.iteration = state["iteration"]

    def result(self) -> dict[str, Any]:
        return {"iteration": self.iteration}


def train_detector(cfg: DetectionConfig) -> dict[str, Any]:
    """Train as ``cfg`` says; works under ``torchrun`` (DDP) and as a plain process."""
    return run_task(DetectionTask, cfg)
