"""VOC/COCO detection readers, the SSD augmentation and the synthetic shapes writer, on files the tests write."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import tv_tensors

from mobilenext.data.datasets import TolerantDataset, UnreadableImage
from mobilenext.detection import transforms as authors_transforms
from mobilenext.detection.data import VOC_CLASSES, COCODetection, VOCDetection, collate_detection
from mobilenext.detection.shapes import SHAPES_CLASSES, write_shapes_voc
from mobilenext.detection.transforms import AuthorsPhotometricDistort, detection_transforms, hsv_to_rgb, rgb_to_hsv
from mobilenext.errors import ConfigError

TRAIN = (("2007", "trainval"),)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    """A shared, read-only shapes dataset; tests that edit files write their own."""
    return write_shapes_voc(tmp_path_factory.mktemp("shapes"), train_images=8, test_images=2, seed=1)


def voc_boxes(xml_path: Path) -> list[tuple[str, list[int]]]:
    root = ET.parse(xml_path).getroot()
    return [
        (o.findtext("name"), [int(o.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax")])
        for o in root.findall("object")
    ]


def year_folder(root: Path) -> Path:
    return root / "VOCdevkit" / "VOC2007"


def test_voc_classes_are_the_twenty_in_standard_order():
    assert len(VOC_CLASSES) == 20 and VOC_CLASSES[0] == "aeroplane" and VOC_CLASSES[14] == "person"
    assert VOC_CLASSES[-1] == "tvmonitor"


def test_shapes_writer_writes_voc_xml_whose_boxes_tightly_frame_the_shapes(shapes):
    folder = year_folder(shapes)
    ids = (folder / "ImageSets/Main/trainval.txt").read_text().split()
    assert len(ids) == 8 and len((folder / "ImageSets/Main/test.txt").read_text().split()) == 2
    isolated = 0
    for image_id in ids:
        root = ET.parse(folder / "Annotations" / f"{image_id}.xml").getroot()
        pixels = np.asarray(Image.open(folder / "JPEGImages" / root.findtext("filename")), dtype=np.float64)
        height, width = pixels.shape[:2]
        assert (int(root.findtext("size/width")), int(root.findtext("size/height"))) == (width, height)
        assert 120 <= width <= 160 and 120 <= height <= 160
        objects = voc_boxes(folder / "Annotations" / f"{image_id}.xml")
        assert 1 <= len(objects) <= 3
        for obj in root.findall("object"):
            assert [obj.findtext(k) for k in ("pose", "truncated", "difficult")] == ["Unspecified", "0", "0"]
        for k, (name, (xmin, ymin, xmax, ymax)) in enumerate(objects):
            assert name in SHAPES_CLASSES
            assert 1 <= xmin < xmax <= width and 1 <= ymin < ymax <= height
            assert 0.15 * min(width, height) <= xmax - xmin + 1 <= 0.65 * min(width, height)
            others = [b for j, (_, b) in enumerate(objects) if j != k]
            if any(b[0] <= xmax + 3 and xmin <= b[2] + 3 and b[1] <= ymax + 3 and ymin <= b[3] + 3 for b in others):
                continue  # colours of a neighbour would blur the check below
            isolated += 1
            x0, y0, x1, y1 = xmin - 1, ymin - 1, xmax, ymax  # 0-based, exclusive end
            colour = pixels[(y0 + y1) // 2 - 1 : (y0 + y1) // 2 + 2, (x0 + x1) // 2 - 1 : (x0 + x1) // 2 + 2]
            near = np.linalg.norm(pixels - colour.reshape(-1, 3).mean(0), axis=-1) < 45
            # tight: every side of the box touches the shape, and the 2-pixel ring outside holds none of it
            assert near[y0 : y0 + 2, x0:x1].any() and near[y1 - 2 : y1, x0:x1].any()
            assert near[y0:y1, x0 : x0 + 2].any() and near[y0:y1, x1 - 2 : x1].any()
            ring = near[max(y0 - 2, 0) : y1 + 2, max(x0 - 2, 0) : x1 + 2].sum() - near[y0:y1, x0:x1].sum()
            assert ring <= 2  # JPEG may smear a pixel or two
    assert isolated >= 5


def test_shapes_writer_is_deterministic(tmp_path, shapes):
    again = write_shapes_voc(tmp_path, train_images=8, test_images=2, seed=1)
    for name in ("Annotations/000003.xml", "JPEGImages/000003.jpg"):
        assert (year_folder(again) / name).read_bytes() == (year_folder(shapes) / name).read_bytes()
    other = write_shapes_voc(tmp_path / "other", train_images=1, test_images=0, seed=2)
    assert (year_folder(other) / "JPEGImages/000001.jpg").read_bytes() != (
        year_folder(shapes) / "JPEGImages/000001.jpg"
    ).read_bytes()


def test_voc_reads_shapes_from_root_or_devkit(shapes):
    folder = year_folder(shapes)
    for root in (shapes, shapes / "VOCdevkit"):
        ds = VOCDetection(root, TRAIN, classes=SHAPES_CLASSES)
        assert len(ds) == 8 and ds.problems == [] and ds.classes == SHAPES_CLASSES
        assert ds.image_ids[0] == "2007/000001"
        for index in (0, 5):
            image, target = ds[index]
            objects = voc_boxes(folder / "Annotations" / f"{ds.image_ids[index][5:]}.xml")
            height, width = Image.open(folder / "JPEGImages" / f"{ds.image_ids[index][5:]}.jpg").size[::-1]
            assert image.shape == (3, height, width) and image.dtype == torch.float32
            assert image.min() >= 0 and image.max() <= 1 and image.max() > 0.5
            assert isinstance(target["boxes"], tv_tensors.BoundingBoxes)
            assert target["boxes"].canvas_size == (height, width) and target["boxes"].dtype == torch.float32
            expected = [[xmin - 1, ymin - 1, xmax, ymax] for _, (xmin, ymin, xmax, ymax) in objects]
            assert target["boxes"].tolist() == expected
            assert target["labels"].tolist() == [SHAPES_CLASSES.index(name) + 1 for name, _ in objects]
            assert target["labels"].dtype == torch.int64 and target["difficult"].dtype == torch.bool
            assert target["image_id"] == index and target["orig_size"].tolist() == [height, width]
    assert ds.counts["objects"] == sum(len(voc_boxes(p)) for p in (folder / "Annotations").glob("00000[1-8].xml"))


def write_problem_voc(root: Path) -> tuple[Path, int, int]:
    """Shapes whose image 1 carries a hand-written annotation with every kind of problem."""
    write_shapes_voc(root, train_images=4, test_images=0, seed=3)
    folder = year_folder(root)
    width, height = Image.open(folder / "JPEGImages/000001.jpg").size

    def obj(name, box, difficult=0):
        coords = "".join(f"<{k}>{v}</{k}>" for k, v in zip(("xmin", "ymin", "xmax", "ymax"), box))
        return (
            f"<object><name>{name}</name><pose>Unspecified</pose><truncated>0</truncated>"
            f"<difficult>{difficult}</difficult><bndbox>{coords}</bndbox></object>"
        )

    objects = [
        obj("circle", (1, 1, 10, 10)),  # 1-based inclusive: the top-left 10x10 pixels
        obj("square", (5, 5, 20, 20), difficult=1),
        obj("triangle", (30, 30, width + 20, 40)),  # reaches past the right edge: clipped
        obj("circle", (width + 5, 3, width + 10, 9)),  # entirely outside: nothing left after clipping
        obj("dog", (2, 2, 8, 8)),  # not a shapes class
    ]
    (folder / "Annotations/000001.xml").write_text(
        f"<annotation><filename>000001.jpg</filename><size><width>{width}</width><height>{height}</height>"
        f"<depth>3</depth></size>{''.join(objects)}</annotation>"
    )
    return root, width, height


def test_voc_converts_clips_and_drops_boxes_and_reports_them(tmp_path):
    root, width, height = write_problem_voc(tmp_path)
    train = VOCDetection(root, TRAIN, classes=SHAPES_CLASSES)
    _, target = train[0]
    assert target["boxes"].tolist() == [[0, 0, 10, 10], [29, 29, width, 40]]
    assert target["labels"].tolist() == [1, 3] and target["difficult"].tolist() == [False, False]
    assert train.counts["clipped_boxes"] == 1 and train.counts["excluded"] == 1
    assert train.counts["dropped_objects"] == 2 and len(train.problems) == 2
    unknown = next(p for p in train.problems if "'dog'" in p)
    assert "000001.xml" in unknown and "unknown class" in unknown
    outside = next(p for p in train.problems if "no area" in p)
    assert "000001.xml" in outside and f"{width}x{height}" in outside

    evaluation = VOCDetection(root, TRAIN, classes=SHAPES_CLASSES, keep_difficult=True)
    _, target = evaluation[0]
    assert target["boxes"].tolist() == [[0, 0, 10, 10], [4, 4, 20, 20], [29, 29, width, 40]]
    assert target["labels"].tolist() == [1, 2, 3] and target["difficult"].tolist() == [False, True, False]

    authors = VOCDetection(root, TRAIN, classes=SHAPES_CLASSES, keep_difficult=True, authors_coordinates=True)
    _, target = authors[0]  # their VOCDataset: every coordinate minus 1
    assert target["boxes"].tolist() == [[0, 0, 9, 9], [4, 4, 19, 19], [29, 29, width, 39]]  # clipped at width


def test_voc_skips_missing_and_malformed_annotations_and_keeps_empty_images(tmp_path):
    write_shapes_voc(tmp_path, train_images=4, test_images=0, seed=4)
    folder = year_folder(tmp_path)
    (folder / "Annotations/000002.xml").unlink()
    (folder / "Annotations/000003.xml").write_text("<annotation><object><name>circle</name>")
    empty = folder / "Annotations/000004.xml"
    size = ET.tostring(ET.parse(empty).getroot().find("size")).decode()
    empty.write_text(f"<annotation>{size}</annotation>")  # a valid negative sample
    ds = VOCDetection(tmp_path, TRAIN, classes=SHAPES_CLASSES)
    assert ds.image_ids == ["2007/000001", "2007/000004"] and len(ds) == 2
    assert ds.counts["skipped_images"] == 2 and ds.counts["empty_images"] == 1
    assert any("000002.xml does not exist" in p and "skipped" in p for p in ds.problems)
    assert any("000003.xml is not valid XML" in p for p in ds.problems)
    image, target = ds[1]
    assert target["boxes"].shape == (0, 4) and target["labels"].shape == (0,) and target["difficult"].shape == (0,)
    assert target["image_id"] == 1


def test_voc_missing_layout_is_a_config_error_naming_the_path(shapes, tmp_path):
    with pytest.raises(ConfigError, match=r"VOC2007/ImageSets/Main/val\.txt does not exist.*trainval"):
        VOCDetection(shapes, (("2007", "val"),), classes=SHAPES_CLASSES)
    with pytest.raises(ConfigError, match=r"VOCdevkit/VOC2012 does not exist; expected the VOCdevkit layout"):
        VOCDetection(shapes, classes=SHAPES_CLASSES)  # the default 07+12 trainval
    with pytest.raises(ConfigError, match="does not exist"):
        VOCDetection(tmp_path / "nowhere", TRAIN)


def test_truncated_jpeg_is_reported_by_tolerant_dataset_and_collate(tmp_path):
    write_shapes_voc(tmp_path, train_images=3, test_images=0, seed=5)
    jpeg = year_folder(tmp_path) / "JPEGImages/000002.jpg"
    jpeg.write_bytes(jpeg.read_bytes()[: jpeg.stat().st_size // 2])
    ds = VOCDetection(tmp_path, TRAIN, classes=SHAPES_CLASSES)
    assert len(ds) == 3  # the header is intact: only decoding finds the damage
    with pytest.raises(UnreadableImage, match="000002.jpg"):
        ds[1]
    loader = torch.utils.data.DataLoader(
        TolerantDataset(ds, substitute=False), batch_size=3, collate_fn=collate_detection
    )
    images, targets, problems = next(iter(loader))
    assert len(images) == len(targets) == 2 and [t["image_id"] for t in targets] == [0, 2]
    assert len(problems) == 1 and "000002.jpg" in problems[0]
    images, targets, problems = collate_detection([TolerantDataset(ds, substitute=True)[1]])
    assert len(images) == 1 and targets[0]["image_id"] == 2 and "000002.jpg" in problems[0]


def write_coco(root: Path) -> tuple[Path, Path]:
    images = root / "images"
    images.mkdir()
    for name, (w, h) in (("a.jpg", (40, 30)), ("b.jpg", (50, 40))):
        Image.new("RGB", (w, h), (200, 30, 30)).save(images / name)
    data = {
        "images": [{"id": 42, "file_name": "a.jpg", "width": 40, "height": 30},
                   {"id": 7, "file_name": "b.jpg", "width": 50, "height": 40}],
        "categories": [{"id": 3, "name": "cat"}, {"id": 1, "name": "person"}],
        "annotations": [
            {"id": 1, "image_id": 42, "category_id": 1, "bbox": [2, 3, 10, 5], "iscrowd": 0},
            {"id": 2, "image_id": 42, "category_id": 3, "bbox": [0, 0, 20.5, 20], "iscrowd": 1},
            {"id": 3, "image_id": 7, "category_id": 3, "bbox": [5, 5, 100, 10], "iscrowd": 0},  # past the edge
        ],
    }  # fmt: skip
    (root / "instances.json").write_text(json.dumps(data))
    return images, root / "instances.json"


def test_coco_maps_categories_converts_boxes_and_handles_crowd(tmp_path):
    images, annotations = write_coco(tmp_path)
    train = COCODetection(images, annotations)
    assert train.classes == ("person", "cat") and train.label_to_category_id == {1: 1, 2: 3}
    assert train.coco_image_ids == [42, 7] and train.problems == [] and train.counts["excluded"] == 1
    image, target = train[0]
    assert image.shape == (3, 30, 40) and image.dtype == torch.float32
    assert target["image_id"] == 42 and target["boxes"].tolist() == [[2, 3, 12, 8]]
    assert target["labels"].tolist() == [1] and target["difficult"].tolist() == [False]
    _, target = train[1]
    assert target["boxes"].tolist() == [[5, 5, 50, 15]] and target["labels"].tolist() == [2]
    assert train.counts["clipped_boxes"] == 1

    evaluation = COCODetection(images, annotations, include_crowd=True)
    _, target = evaluation[0]
    assert target["boxes"].tolist() == [[2, 3, 12, 8], [0, 0, 20.5, 20]]
    assert target["labels"].tolist() == [1, 2] and target["difficult"].tolist() == [False, True]

    data = json.loads(Path(annotations).read_text())
    data["images"].append({"id": 9, "file_name": "a.jpg", "width": 40, "height": 30})  # no annotation names it
    Path(annotations).write_text(json.dumps(data))
    assert len(COCODetection(images, annotations)) == 3
    authors = COCODetection(images, annotations, drop_unannotated=True)  # their training set
    assert authors.coco_image_ids == [42, 7] and "1 images without annotations left out" in authors.summary()


def test_coco_reports_bad_annotations_and_rejects_bad_files(tmp_path):
    images, annotations = write_coco(tmp_path)
    data = json.loads(annotations.read_text())
    data["images"].append({"id": 9, "file_name": "gone.jpg", "width": 10, "height": 10})
    data["annotations"] += [
        {"id": 4, "image_id": 7, "category_id": 5, "bbox": [1, 1, 5, 5]},  # unknown category
        {"id": 5, "image_id": 7, "category_id": 1, "bbox": [1, 1, 0, 5]},  # no width
    ]
    annotations.write_text(json.dumps(data))
    ds = COCODetection(images, annotations)
    assert ds.coco_image_ids == [42, 7] and ds.counts["skipped_images"] == 1 and ds.counts["dropped_objects"] == 2
    assert any("gone.jpg" in p and "does not exist" in p for p in ds.problems)
    assert any("annotation 4" in p and "unknown category id 5" in p for p in ds.problems)
    assert any("annotation 5" in p and "no area" in p for p in ds.problems)
    assert ds[1][1]["labels"].tolist() == [2]

    with pytest.raises(ConfigError, match="missing.json does not exist"):
        COCODetection(images, tmp_path / "missing.json")
    (tmp_path / "broken.json").write_text('{"images": [')
    with pytest.raises(ConfigError, match="not valid JSON"):
        COCODetection(images, tmp_path / "broken.json")


@pytest.mark.parametrize("pipeline", ["authors", "torchvision"])
def test_training_transforms_keep_boxes_inside_the_resized_image(shapes, pipeline):
    torch.manual_seed(0)
    transforms = detection_transforms(True, size=64, pipeline=pipeline)
    ds = VOCDetection(shapes, TRAIN, classes=SHAPES_CLASSES, transforms=transforms)
    kept, unclipped = 0, False
    for _ in range(3):
        for index in range(len(ds)):
            image, target = ds[index]
            assert image.shape == (3, 64, 64) and image.dtype == torch.float32
            unclipped |= bool(image.min() < 0 or image.max() > 1)
            boxes = target["boxes"]
            assert boxes.canvas_size == (64, 64)
            assert (boxes >= 0).all() and (boxes <= 64).all()
            assert (boxes[:, 2:] > boxes[:, :2]).all()
            assert len(target["labels"]) == len(target["difficult"]) == len(boxes)
            kept += len(boxes)
    assert kept > 0
    assert unclipped == (pipeline == "authors")  # their float pipeline never clips; torchvision's uint8 one does


@pytest.mark.parametrize("pipeline", ["authors", "torchvision"])
def test_training_transforms_pass_images_without_objects(tmp_path, pipeline):
    image = tv_tensors.Image(torch.randint(0, 256, (3, 50, 70), dtype=torch.uint8))
    target = {
        "boxes": tv_tensors.BoundingBoxes(torch.zeros(0, 4), format="XYXY", canvas_size=(50, 70)),
        "labels": torch.zeros(0, dtype=torch.int64),
        "difficult": torch.zeros(0, dtype=torch.bool),
    }
    transforms = detection_transforms(True, size=32, pipeline=pipeline)
    for seed in range(10):
        torch.manual_seed(seed)
        out, out_target = transforms(image, target)
        assert out.shape == (3, 32, 32) and out.dtype == torch.float32
        assert out_target["boxes"].shape == (0, 4) and out_target["labels"].shape == (0,)


def test_sanitize_filters_difficult_with_labels_and_evaluation_keeps_size():
    sanitize = detection_transforms(True, pipeline="torchvision").transforms[-2]
    image = tv_tensors.Image(torch.zeros(3, 20, 20, dtype=torch.uint8))
    target = {
        "boxes": tv_tensors.BoundingBoxes([[0, 0, 0, 0], [2, 2, 9, 9]], format="XYXY", canvas_size=(20, 20)),
        "labels": torch.tensor([1, 2]),
        "difficult": torch.tensor([False, True]),
    }
    _, out = sanitize(image, target)
    assert out["boxes"].tolist() == [[2, 2, 9, 9]] and out["labels"].tolist() == [2]
    assert out["difficult"].tolist() == [True]
    out_image, out_target = detection_transforms(False)(image, target)
    assert out_image.shape == (3, 20, 20) and out_image.dtype == torch.float32
    assert out_target["boxes"].tolist() == target["boxes"].tolist()


def test_authors_colour_conversion_is_opencvs_float_hsv():
    """Their saturation and hue steps go through OpenCV's float HSV (H in degrees, S = chroma / max, V = max),
    unclipped, so a saturation above 1 drives the smallest channel negative; colorsys defines the same."""
    import colorsys

    torch.manual_seed(0)
    rgb = torch.rand(3, 4, 6) * 255
    rgb[:, 0, 0], rgb[:, 0, 1] = 0, 100  # black and grey: hue and saturation 0
    hsv = rgb_to_hsv(rgb)
    hsv[1] *= 1.4
    back = hsv_to_rgb(hsv)
    for pixel, changed in zip(rgb.reshape(3, -1).T, back.reshape(3, -1).T):
        h, s, v = colorsys.rgb_to_hsv(*(pixel / 255).tolist())
        expected = colorsys.hsv_to_rgb(h, s * 1.4, v)
        torch.testing.assert_close(changed / 255, torch.tensor(expected, dtype=torch.float32), atol=1e-5, rtol=0)
    assert back.min() < 0
    torch.testing.assert_close(hsv_to_rgb(rgb_to_hsv(rgb)), rgb, atol=1e-3, rtol=0)


def test_authors_brightness_and_contrast_are_added_and_scaled_without_clipping(monkeypatch):
    image = tv_tensors.Image(torch.full((3, 2, 2), 250, dtype=torch.uint8))
    coins = iter([True, True, False, False, False, False])  # brightness, contrast first but skipped, rest off
    monkeypatch.setattr(authors_transforms, "_coin", lambda: next(coins))
    monkeypatch.setattr(authors_transforms, "_uniform", lambda low, high: high)
    out, _ = AuthorsPhotometricDistort()(image, {})
    assert isinstance(out, tv_tensors.Image) and out.dtype == torch.float32
    torch.testing.assert_close(out.as_subclass(torch.Tensor), torch.full((3, 2, 2), 282.0))  # 250 + 32
    coins = iter([False, True, True, False, False, False])  # contrast x 1.5 only
    out, _ = AuthorsPhotometricDistort()(image, {})
    torch.testing.assert_close(out.as_subclass(torch.Tensor), torch.full((3, 2, 2), 375.0))


def test_authors_pipeline_settings():
    steps = detection_transforms(True, pipeline="authors").transforms
    crop = next(t for t in steps if isinstance(t, authors_transforms._IoUCropIfBoxes)).crop
    assert crop.options == [0.0, 0.1, 0.3, 0.7, 0.9, 1.0] and crop.trials == 50  # no 0.5 mode
    assert next(t for t in steps if hasattr(t, "antialias")).antialias is False
    torchvision_crop = next(
        t.crop for t in detection_transforms(True, pipeline="torchvision").transforms if hasattr(t, "crop")
    )
    assert 0.5 in torchvision_crop.options
