"""Pascal VOC and COCO detection datasets, a collate function for detection batches, and
:func:`open_detection_data`, which finds a dataset folder's splits (the SSD augmentation is in :mod:`.transforms`).

Every annotation is parsed when the dataset is built, so a broken file is found (and reported in
``dataset.problems``) before training starts instead of crashing an epoch hours in. What can be repaired
is repaired and counted (a box reaching past the image is clipped); what cannot is left out and reported
(a box with no area, an object of an unknown class, an image whose annotation is missing or malformed).
Images without objects are kept: they are valid negative samples for SSD.

Box convention: targets hold 0-based ``XYXY`` float boxes in continuous pixel coordinates, the
torchvision detection convention, where a box over the whole ``W x H`` image is ``(0, 0, W, H)``. VOC
stores 1-based inclusive pixel indices, so pixel ``i`` (1-based) covers ``[i - 1, i)`` and a VOC box
becomes ``(xmin - 1, ymin - 1, xmax, ymax)``. COCO's ``[x, y, w, h]`` is already continuous and 0-based:
it becomes ``(x, y, x + w, y + h)``. The authors' VOCDataset subtracts 1 from every coordinate instead
(``authors_coordinates=True``, their recipes): a box one pixel narrower and shorter. Labels are ``1..K``
for the ``K`` classes; 0 is the background.

Items are ``(image, target)``: the image a float32 ``[3, H, W]`` tensor (in [0, 1] unless the authors'
augmentation pushed it out), the target a dict with
``boxes`` (``tv_tensors.BoundingBoxes``), ``labels`` (int64), ``difficult`` (bool; VOC "difficult" or
COCO crowd objects, which evaluation ignores), ``image_id`` and ``orig_size`` (``[H, W]`` as decoded).
"""

from __future__ import annotations

import json
import logging
import os
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as F

from ..data.datasets import UnreadableImage
from ..data.images import read_image
from ..errors import ConfigError, ImageError
from .transforms import detection_transforms

__all__ = [
    "COCO_CLASSES",
    "VOC_CLASSES",
    "COCODetection",
    "DetectionData",
    "VOCDetection",
    "collate_detection",
    "open_detection_data",
]

log = logging.getLogger("mobilenext")

VOC_CLASSES: tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip

# COCO 2017's 80 categories in id order (what the authors' COCO detectors predict, label c = c-th name).
COCO_CLASSES: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors", "teddy bear",
    "hair drier", "toothbrush",
)  # fmt: skip

_VOC_LAYOUT = "VOCdevkit/VOC<year>/{JPEGImages/<id>.jpg, Annotations/<id>.xml, ImageSets/Main/<set>.txt}"


@dataclass(frozen=True)
class _Record:
    """One usable image: numpy arrays rather than tensors or lists keep 16k records cheap to fork to workers."""

    path: str
    boxes: np.ndarray  # float32 [N, 4], 0-based XYXY, clipped to the annotated image size
    labels: np.ndarray  # int64 [N]
    difficult: np.ndarray  # bool [N]
    image_id: int


class _DetectionDataset(torch.utils.data.Dataset):
    """What VOC and COCO share: the records, the problem report, and item decoding."""

    classes: tuple[str, ...]

    def __init__(self, transforms: Callable | None):
        self.transforms = transforms
        self.problems: list[str] = []
        self.counts = dict.fromkeys(
            (
                "images",
                "objects",
                "skipped_images",
                "dropped_objects",
                "clipped_boxes",
                "empty_images",
                "excluded",
                "excluded_images",
            ),
            0,
        )
        self._records: list[_Record] = []

    def __len__(self) -> int:
        return len(self._records)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, Any]]:
        record = self._records[index]
        image = _decode(record.path)
        height, width = image.shape[-2:]
        # the decoded size normally equals the annotated one; clip again in case a file was replaced
        boxes, _ = _clip(record.boxes, width, height)
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        boxes = torch.from_numpy(boxes[keep])
        target = {
            "boxes": tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(height, width)),
            "labels": torch.from_numpy(record.labels[keep]),
            "difficult": torch.from_numpy(record.difficult[keep]),
            "image_id": record.image_id,
            "orig_size": torch.tensor([height, width]),
        }
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        if not image.is_floating_point():  # transforms without ToDtype, or none at all
            image = F.to_dtype(image, torch.float32, scale=True)
        return image, target

    def summary(self) -> str:
        """One line for logs: what was read and what had to be repaired or left out."""
        c = self.counts
        return (
            f"{len(self)} images ({c['empty_images']} without objects), {c['objects']} objects; "
            f"{c['skipped_images']} images skipped, {c['dropped_objects']} objects dropped, "
            f"{c['clipped_boxes']} boxes clipped, {c['excluded']} difficult/crowd objects excluded"
            + (f", {c['excluded_images']} images without annotations left out" if c["excluded_images"] else "")
        )

    def _report(self, problem: str, count: str, amount: int = 1) -> None:
        self.problems.append(problem)
        self.counts[count] += amount

    def _add(
        self,
        path: Path,
        objects: list[tuple[np.ndarray, int, bool, str]],
        size: tuple[int, int],
        image_id: int,
        source: Path,
    ) -> None:
        """Clip and check the boxes of one image, then keep it. ``objects`` are (box, label, difficult, desc)."""
        width, height = size
        boxes = np.array([o[0] for o in objects], dtype=np.float32).reshape(-1, 4)
        boxes, clipped = _clip(boxes, width, height)
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        self.counts["clipped_boxes"] += int((clipped & keep).sum())
        for (_, _, _, desc), ok in zip(objects, keep):
            if not ok:
                self._report(
                    f"{source}: {desc} has no area inside the {width}x{height} image; dropped.", "dropped_objects"
                )
        labels = np.array([o[1] for o in objects], dtype=np.int64)[keep]
        difficult = np.array([o[2] for o in objects], dtype=bool)[keep]
        self.counts["objects"] += int(keep.sum())
        self.counts["empty_images"] += int(not keep.any())
        self._records.append(_Record(str(path), boxes[keep], labels, difficult, image_id))

    def _check_not_empty(self, description: str) -> None:
        self.counts["images"] = len(self._records)
        if not self._records:
            first = f" (first problem: {self.problems[0]})" if self.problems else ""
            raise ConfigError(f"{description} has no usable images{first}.")


class VOCDetection(_DetectionDataset):
    """Pascal VOC detection: ``root`` is the folder holding ``VOCdevkit``, or ``VOCdevkit`` itself.

    ``image_sets`` are ``(year, set)`` pairs such as ``("2007", "test")``. ``keep_difficult=False`` (training)
    leaves out objects marked difficult; ``True`` (evaluation) keeps them with ``target["difficult"]`` set,
    because VOC mAP ignores detections matched to them rather than counting them as false positives.
    ``authors_coordinates``: every coordinate minus 1, as the authors' VOCDataset, instead of the continuous
    ``(xmin - 1, ymin - 1, xmax, ymax)`` (see the module doc).
    ``target["image_id"]`` is the item index; ``image_ids[i]`` is its ``"<year>/<id>"`` name.
    """

    def __init__(
        self,
        root: str | Path,
        image_sets: Sequence[tuple[str, str]] = (("2007", "trainval"), ("2012", "trainval")),
        classes: Sequence[str] = VOC_CLASSES,
        keep_difficult: bool = False,
        transforms: Callable | None = None,
        authors_coordinates: bool = False,
    ):
        super().__init__(transforms)
        self.classes = _check_classes(classes)
        self.keep_difficult = keep_difficult
        self.authors_coordinates = authors_coordinates
        self.image_ids: list[str] = []
        devkit = _find_devkit(Path(root))
        self.root = devkit
        for year, image_set in image_sets:
            for name in _read_image_set(devkit, str(year), image_set):
                self._add_voc_image(devkit / f"VOC{year}", str(year), name)
        self._check_not_empty(f"{devkit} ({', '.join(f'{y} {s}' for y, s in image_sets)})")

    def _add_voc_image(self, folder: Path, year: str, name: str) -> None:
        xml_path, image_path = folder / "Annotations" / f"{name}.xml", folder / "JPEGImages" / f"{name}.jpg"
        if not image_path.is_file():
            return self._report(f"{image_path} does not exist; image skipped.", "skipped_images")
        if not xml_path.is_file():
            return self._report(f"{xml_path} does not exist; image {image_path.name} skipped.", "skipped_images")
        try:
            annotation = ET.parse(xml_path).getroot()
        except ET.ParseError as e:
            return self._report(f"{xml_path} is not valid XML ({e}); image skipped.", "skipped_images")
        size = _voc_size(annotation) or _header_size(image_path)
        if size is None:
            return self._report(
                f"{xml_path} has no image size and {image_path} is unreadable; image skipped.", "skipped_images"
            )
        objects = [o for o in (self._voc_object(obj, xml_path) for obj in annotation.findall("object")) if o]
        self._add(image_path, objects, size, len(self._records), xml_path)
        self.image_ids.append(f"{year}/{name}")

    def _voc_object(self, obj: ET.Element, xml_path: Path) -> tuple[np.ndarray, int, bool, str] | None:
        name = (obj.findtext("name") or "").strip()
        if name not in self.classes:
            return self._report(
                f"{xml_path}: unknown class {name!r} (not one of the {len(self.classes)} classes); object dropped.",
                "dropped_objects",
            )
        difficult = (obj.findtext("difficult") or "0").strip() == "1"
        if difficult and not self.keep_difficult:
            self.counts["excluded"] += 1
            return None
        try:
            xmin, ymin, xmax, ymax = (float(obj.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax"))
        except (TypeError, ValueError):
            return self._report(
                f"{xml_path}: {name} has a missing or non-numeric bndbox; object dropped.", "dropped_objects"
            )
        box = np.array([xmin - 1, ymin - 1, xmax, ymax])  # 1-based inclusive -> 0-based continuous
        if self.authors_coordinates:
            box[2:] -= 1
        desc = f"{name} box (xmin {xmin:g}, ymin {ymin:g}, xmax {xmax:g}, ymax {ymax:g})"
        return box, self.classes.index(name) + 1, difficult, desc


class COCODetection(_DetectionDataset):
    """COCO-format detection from ``images_dir`` and an instances json (read with ``json``; no pycocotools).

    Category ids become contiguous labels ``1..K`` in sorted id order: ``classes[k - 1]`` names label ``k``
    and ``label_to_category_id[k]`` maps it back for writing results. Crowd annotations are left out
    unless ``include_crowd`` (evaluation), which keeps them flagged in ``target["difficult"]``.
    ``drop_unannotated`` leaves out images that no annotation mentions, as the authors' training set does
    (crowd-only images stay, without objects).
    ``target["image_id"]`` is the COCO image id; ``coco_image_ids[i]`` is that of item ``i``.
    """

    def __init__(
        self,
        images_dir: str | Path,
        annotation_file: str | Path,
        transforms: Callable | None = None,
        include_crowd: bool = False,
        drop_unannotated: bool = False,
    ):
        super().__init__(transforms)
        self.images_dir, self.annotation_file = Path(images_dir), Path(annotation_file)
        self.include_crowd = include_crowd
        data = _read_coco_json(self.annotation_file)
        if not self.images_dir.is_dir():
            raise ConfigError(
                f"COCO image folder {self.images_dir} does not exist; pass the folder holding the "
                f"images that {self.annotation_file.name} lists (e.g. .../val2017)."
            )
        categories = sorted(data["categories"], key=lambda c: c["id"])
        self.classes = tuple(str(c.get("name", c["id"])) for c in categories)
        self.label_to_category_id = {k + 1: int(c["id"]) for k, c in enumerate(categories)}
        self._category_to_label = {c: k for k, c in self.label_to_category_id.items()}
        by_image = self._group_annotations(data["annotations"])
        present = set(os.listdir(self.images_dir))  # one listing instead of 100k+ stat calls
        for entry in data["images"]:
            if drop_unannotated and entry.get("id") not in by_image:
                self.counts["excluded_images"] += 1
                continue
            self._add_coco_image(entry, by_image.pop(entry.get("id"), []), present)
        for image_id, orphans in by_image.items():  # what is left refers to no listed image
            self._report(
                f"{self.annotation_file}: {len(orphans)} annotations refer to image id {image_id!r}, "
                "which the images list lacks; dropped.",
                "dropped_objects",
                len(orphans),
            )
        self.coco_image_ids = [r.image_id for r in self._records]
        self._check_not_empty(f"{self.annotation_file} with images in {self.images_dir}")

    def _group_annotations(self, annotations: list[dict]) -> dict[Any, list[dict]]:
        by_image: dict[Any, list[dict]] = {}
        for a in annotations:
            by_image.setdefault(a.get("image_id"), []).append(a)
        return by_image

    def _add_coco_image(self, entry: dict, annotations: list[dict], present: set[str]) -> None:
        file_name, image_id = entry.get("file_name"), entry.get("id")
        if not isinstance(file_name, str) or not isinstance(image_id, int):
            return self._report(
                f"{self.annotation_file}: image entry {entry} lacks an integer id or a file_name; skipped.",
                "skipped_images",
            )
        path = self.images_dir / file_name
        if file_name not in present and not path.is_file():  # is_file for names with sub-folders
            return self._report(f"{path} (COCO image {image_id}) does not exist; image skipped.", "skipped_images")
        size = (entry.get("width"), entry.get("height"))
        if not all(isinstance(s, int) and s > 0 for s in size):
            size = _header_size(path)
            if size is None:
                return self._report(
                    f"{path} is unreadable and its size is not annotated; image skipped.", "skipped_images"
                )
        objects = [o for o in (self._coco_object(a, path) for a in annotations) if o]
        self._add(path, objects, size, image_id, self.annotation_file)

    def _coco_object(self, annotation: dict, path: Path) -> tuple[np.ndarray, int, bool, str] | None:
        ann_id, category = annotation.get("id"), annotation.get("category_id")
        label = self._category_to_label.get(category)
        if label is None:
            return self._report(
                f"{self.annotation_file}: annotation {ann_id} of {path.name} has unknown category "
                f"id {category!r}; dropped.",
                "dropped_objects",
            )
        crowd = bool(annotation.get("iscrowd", 0))
        if crowd and not self.include_crowd:
            self.counts["excluded"] += 1
            return None
        bbox = annotation.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, (int, float)) for v in bbox)):
            return self._report(
                f"{self.annotation_file}: annotation {ann_id} of {path.name} has no valid bbox ({bbox!r}); dropped.",
                "dropped_objects",
            )
        x, y, w, h = (float(v) for v in bbox)
        desc = f"annotation {ann_id} ({self.classes[label - 1]}, bbox {bbox}) of {path.name}"
        return np.array([x, y, x + w, y + h]), label, crowd, desc


def collate_detection(batch: Sequence[tuple]) -> tuple[list[torch.Tensor], list[dict[str, Any]], list[str]]:
    """Lists of images and targets (detection images differ in size) plus one string per unreadable image.

    Items are ``(image, target, problem)`` from :class:`~mobilenext.data.datasets.TolerantDataset`, or plain
    ``(image, target)``. Unreadable images arrive as ``None`` in evaluation and are left out, as in
    :func:`~mobilenext.data.datasets.collate_tolerant`.
    """
    problems = [item[2] for item in batch if len(item) > 2 and item[2] is not None]
    good = [item for item in batch if item[0] is not None]
    return [item[0] for item in good], [item[1] for item in good], problems


def _decode(path: str) -> tv_tensors.Image:
    """Decode now (:func:`read_image`, as classification and prediction do) so a truncated or too large file
    fails here, where :class:`TolerantDataset` can report it."""
    try:
        return F.to_image(read_image(path))
    except ImageError as e:  # its message names the file
        raise UnreadableImage(str(e)) from None


def _clip(boxes: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Boxes clipped to the image, and which of them changed."""
    clipped = np.clip(boxes, 0, np.array([width, height, width, height], dtype=boxes.dtype)).astype(np.float32)
    return clipped, (clipped != boxes).any(axis=1)


def _header_size(path: Path) -> tuple[int, int] | None:
    """``(width, height)`` from the image header alone, for annotations that do not say."""
    try:
        with warnings.catch_warnings():  # an image over the pixel limit is reported when it is decoded
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                return image.size
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


def _check_classes(classes: Sequence[str]) -> tuple[str, ...]:
    classes = tuple(classes)
    duplicates = sorted({c for c in classes if classes.count(c) > 1})
    if not classes or duplicates:
        raise ConfigError(f"detection classes must be distinct and non-empty; got {classes}.")
    return classes


def _find_devkit(root: Path) -> Path:
    if not root.is_dir():
        raise ConfigError(f"VOC folder {root} does not exist; pass the folder holding {_VOC_LAYOUT}.")
    return root / "VOCdevkit" if (root / "VOCdevkit").is_dir() else root


def _read_image_set(devkit: Path, year: str, image_set: str) -> list[str]:
    folder = devkit / f"VOC{year}"
    if not folder.is_dir():
        raise ConfigError(
            f"{folder} does not exist; expected the VOCdevkit layout {_VOC_LAYOUT} "
            f"under {devkit.parent if devkit.name == 'VOCdevkit' else devkit}."
        )
    path = folder / "ImageSets" / "Main" / f"{image_set}.txt"
    if not path.is_file():
        available = sorted(p.stem for p in path.parent.glob("*.txt") if "_" not in p.stem)
        raise ConfigError(
            f"{path} does not exist; expected the VOCdevkit layout {_VOC_LAYOUT} "
            f"(image sets present for VOC{year}: {', '.join(available) or 'none'})."
        )
    # per-class lists (aeroplane_trainval.txt) add a second column; the id is always the first
    return [line.split()[0] for line in path.read_text().splitlines() if line.strip()]


def _voc_size(annotation: ET.Element) -> tuple[int, int] | None:
    try:
        width, height = (int(float(annotation.findtext(f"size/{k}"))) for k in ("width", "height"))
    except (TypeError, ValueError):
        return None
    return (width, height) if width > 0 and height > 0 else None


def _read_coco_json(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(
            f"COCO annotation file {path} does not exist; pass an instances json such as "
            "annotations/instances_val2017.json."
        )
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path} is not valid JSON ({e}); pass a COCO instances json.") from None
    missing = [
        k
        for k in ("images", "annotations", "categories")
        if not isinstance(data, dict) or not isinstance(data.get(k), list)
    ]
    if missing:
        raise ConfigError(f"{path} is not a COCO instances file: it has no {', '.join(missing)} list.")
    bad = [c for c in data["categories"] if not isinstance(c, dict) or not isinstance(c.get("id"), int)]
    if bad:
        raise ConfigError(f"{path}: category {bad[0]!r} has no integer id; fix the categories list.")
    return data


# ---- finding the splits of a dataset folder -------------------------------------------------------------
@dataclass
class DetectionData:
    train: torch.utils.data.Dataset | None
    test: torch.utils.data.Dataset
    classes: tuple[str, ...]
    kind: str  # "voc" or "coco"
    description: str


def _dataset_kind(root: Path, requested: str) -> str:
    if requested != "auto":
        return requested
    if (root / "VOCdevkit").is_dir() or root.name == "VOCdevkit" or any(root.glob("VOC20*")):
        return "voc"
    if (root / "annotations").is_dir():
        return "coco"
    raise ConfigError(
        f"{root} holds neither VOCdevkit/ (Pascal VOC) nor annotations/ (COCO); "
        "pass the dataset root or --dataset voc|coco."
    )


def _voc_sets(root: Path, names: tuple[str, ...] | list[str], required: bool) -> list[tuple[str, str]]:
    """``YEAR/SET`` names to (year, set) pairs; when training, sets whose list file is absent are skipped."""
    devkit = root if root.name == "VOCdevkit" else root / "VOCdevkit"
    pairs = []
    for name in names:
        year, _, image_set = name.partition("/")
        if not image_set:
            raise ConfigError(f"VOC image set {name!r} should look like 2007/trainval.")
        if required or (devkit / f"VOC{year}" / "ImageSets" / "Main" / f"{image_set}.txt").is_file():
            pairs.append((year, image_set))
    if not pairs:
        raise ConfigError(f"none of the image sets {', '.join(names)} exists under {devkit}.")
    return pairs


def _coco_split(root: Path, split: str, transforms, drop_unannotated: bool = False) -> COCODetection:
    return COCODetection(
        root / split,
        root / "annotations" / f"instances_{split}.json",
        transforms=transforms,
        drop_unannotated=drop_unannotated,
    )


_PROBLEMS_SHOWN = 5  # per split; the rest are counted in the summary line


def open_detection_data(
    data: str | Path | None,
    dataset: str = "auto",
    train_sets: tuple[str, ...] | list[str] | None = ("2007/trainval", "2012/trainval"),
    test_set: str = "2007/test",
    size: int = 320,
    classes: tuple[str, ...] | list[str] | None = None,
    augment: bool = True,
    pipeline: str = "authors",
) -> DetectionData:
    """The training and test sets of a VOC or COCO folder, with SSD augmentation on the training set.

    ``train_sets=None`` opens only the test set (evaluation). Difficult VOC objects are left out of training
    and kept, flagged, for evaluation, where VOC ignores them. ``classes`` names a VOC-format dataset's
    classes (default: VOC's 20). What the readers had to repair or leave out is logged, never fatal, except
    a split without a single object of the given classes, which cannot be trained or scored. ``pipeline``:
    the authors' data conventions or torchvision's (:mod:`.transforms`), for both splits.
    """
    if data is None:
        raise ConfigError("detection needs --data: a Pascal VOC root (with VOCdevkit/) or a COCO root.")
    root = Path(data)
    if not root.is_dir():
        raise ConfigError(f"dataset folder {root} does not exist.")
    kind = _dataset_kind(root, dataset)
    train_tf = detection_transforms(True, size, augment=augment, pipeline=pipeline)
    test_tf = detection_transforms(False, size)
    authors = pipeline == "authors"
    splits: dict[str, Any] = {}
    if kind == "voc":
        voc = {"classes": tuple(classes)} if classes else {}
        voc["authors_coordinates"] = authors
        splits["test"] = VOCDetection(
            root, _voc_sets(root, [test_set], True), keep_difficult=True, transforms=test_tf, **voc
        )
        if train_sets is not None:
            splits["train"] = VOCDetection(root, _voc_sets(root, train_sets, False), transforms=train_tf, **voc)
    else:  # VOC-style YEAR/SET names (the defaults) mean COCO's usual splits
        splits["test"] = _coco_split(root, "val2017" if "/" in test_set else test_set, test_tf)
        if train_sets is not None:
            name = "train2017" if "/" in train_sets[0] else train_sets[0]
            splits["train"] = _coco_split(root, name, train_tf, drop_unannotated=authors)
    for name, split in splits.items():
        _report_split(name, split)
    train, test = splits.get("train"), splits["test"]
    sizes = f"{len(train):,} train / " if train is not None else ""
    description = f"{kind.upper()} at {root}: {sizes}{len(test):,} test images, {len(test.classes)} classes"
    return DetectionData(train, test, tuple(test.classes), kind, description)


def _report_split(name: str, split) -> None:
    log.info(f"{name}: {split.summary()}")
    for problem in split.problems[:_PROBLEMS_SHOWN]:
        log.warning(f"  {problem}")
    if len(split.problems) > _PROBLEMS_SHOWN:
        log.warning(f"  ... and {len(split.problems) - _PROBLEMS_SHOWN} more")
    if split.counts["objects"] == 0:
        raise ConfigError(
            f"the {name} split has no objects of the classes {', '.join(split.classes[:5])}, ...; "
            "name the dataset's classes with --classes."
        )
