"""A synthetic detection dataset in the Pascal VOC layout: circles, squares and triangles on textured ground.

It exists so the detection pipeline (reader, augmentation, SSD training, VOC mAP) can be exercised end to
end in seconds without downloading VOC. Shapes are large and coloured far from the background so a tiny
SSD trained briefly on a CPU learns to find them; the background is textured (smooth noise, stripes or a
gradient between two random colours) so "anything not flat is an object" is not a usable shortcut.

Boxes are written the way VOC writes them: 1-based, inclusive pixel indices. A shape whose visible pixels
span 0-based columns ``c0..c1`` gets ``xmin = c0 + 1``, ``xmax = c1 + 1``.

:data:`CLUTTERED` is a harder setting for comparing trainers: up to eight smaller shapes per image that may hide
each other (a shape less than a third visible is marked difficult, as VOC marks hard objects), and clutter
strokes in object-like colours that are not objects. ``names`` writes the shapes under other class names,
e.g. three of VOC's, so that code which knows only VOC's 20 classes reads the dataset unchanged.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["CLUTTERED", "SHAPES_CLASSES", "write_shapes_voc"]

SHAPES_CLASSES: tuple[str, ...] = ("circle", "square", "triangle")

_YEAR = "2007"  # VOC2007 is the year the usual "07+12 trainval, 07 test" protocol evaluates on
_MIN_COLOUR_DISTANCE = 100.0  # RGB distance of a shape's colour from every colour the background can take
_MAX_IOU = 0.1  # shapes may touch a little, never hide each other
_SHAPE_SIDE = (0.2, 0.6)  # shape size as a fraction of the shorter image side
_DIFFICULT_BELOW = 1 / 3  # a shape with less of its area visible is marked difficult
_MIN_VISIBLE = 0.1  # and one with less than this is not annotated at all

# The harder setting: more and smaller objects, occlusion, clutter (keyword arguments of write_shapes_voc).
CLUTTERED = {"objects": (3, 8), "max_iou": 0.45, "side": (0.12, 0.4), "clutter": 6}


def write_shapes_voc(
    root: str | Path,
    train_images: int = 60,
    test_images: int = 20,
    size: int | tuple[int, int] = (120, 160),
    seed: int = 0,
    classes: Sequence[str] = SHAPES_CLASSES,
    objects: tuple[int, int] = (1, 3),
    max_iou: float = _MAX_IOU,
    side: tuple[float, float] = _SHAPE_SIDE,
    clutter: int = 0,
    names: dict[str, str] | None = None,
) -> Path:
    """Write ``root/VOCdevkit/VOC2007/{JPEGImages,Annotations,ImageSets/Main/{trainval,test}.txt}``.

    ``size`` is the side length in pixels, or an inclusive ``(smallest, largest)`` range from which each
    image's width and height are drawn (real VOC images differ in size, which the reader must handle).
    ``classes`` names the shapes by kind: any subset of :data:`SHAPES_CLASSES`. ``objects``: how many shapes an
    image gets (inclusive range; fewer where they do not fit), ``max_iou`` how much two may overlap, ``side``
    their size as a fraction of the shorter image side, ``clutter`` how many non-object strokes each image
    gets at most; ``names`` maps a kind to the class name written (default: the kind). The same seed writes
    the same files. Returns ``root``, the folder to pass as the dataset root.
    """
    unknown = sorted(set(classes) - set(SHAPES_CLASSES))
    if unknown or not classes:
        raise ValueError(f"classes must be a non-empty subset of {SHAPES_CLASSES}, got {tuple(classes)}.")
    sides = (size, size) if isinstance(size, int) else tuple(size)
    root = Path(root)
    year = root / "VOCdevkit" / f"VOC{_YEAR}"
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (year / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    ids = [f"{i:06d}" for i in range(1, train_images + test_images + 1)]
    layout = {"objects": objects, "max_iou": max_iou, "side": side, "clutter": clutter}
    for image_id in ids:
        height, width = (int(s) for s in rng.integers(sides[0], sides[1] + 1, size=2))
        pixels, found = render_shapes(rng, height, width, classes, **layout)
        found = [((names or {}).get(kind, kind), box, difficult) for kind, box, difficult in found]
        Image.fromarray(pixels).save(year / "JPEGImages" / f"{image_id}.jpg", quality=95, subsampling=0)
        _write_annotation(year / "Annotations" / f"{image_id}.xml", f"{image_id}.jpg", (height, width), found)
    _write_list(year / "ImageSets/Main/trainval.txt", ids[:train_images])
    _write_list(year / "ImageSets/Main/test.txt", ids[train_images:])
    return root


def render_shapes(
    rng: np.random.Generator,
    height: int,
    width: int,
    classes: Sequence[str] = SHAPES_CLASSES,
    objects: tuple[int, int] = (1, 3),
    max_iou: float = _MAX_IOU,
    side: tuple[float, float] = _SHAPE_SIDE,
    clutter: int = 0,
) -> tuple[np.ndarray, list[tuple[str, tuple[int, int, int, int], bool]]]:
    """One ``uint8 [H, W, 3]`` image and its objects as ``(class, (xmin, ymin, xmax, ymax), difficult)`` in
    VOC's 1-based inclusive pixel indices, tight around each shape's visible pixels (see
    :func:`write_shapes_voc` for the arguments)."""
    low, high = _distinct_colours(rng, 2, min_distance=60.0)
    field = _texture(rng, height, width)
    pixels = low + field[..., None] * (high - low) + rng.normal(0.0, 4.0, (height, width, 3))
    if clutter:
        _draw_clutter(rng, pixels, int(rng.integers(0, clutter + 1)))
    owner = np.full((height, width), -1, dtype=np.int64)  # which shape each pixel shows
    kinds: list[str] = []
    areas: list[int] = []
    placed: list[tuple[int, int, int, int]] = []
    for _ in range(int(rng.integers(objects[0], objects[1] + 1))):
        kind = str(rng.choice(list(classes)))
        box = _place(rng, height, width, placed, max_iou, side)
        if box is None:
            continue
        mask = _shape_mask(kind, box, height, width, flip=bool(rng.integers(2)))
        owner[mask] = len(kinds)
        pixels[mask] = _far_colour(rng, low, high)
        kinds.append(kind)
        areas.append(int(mask.sum()))
        placed.append(box)
    found = []
    for index, kind in enumerate(kinds):
        rows, cols = np.nonzero(owner == index)
        # a later shape may cover an earlier one entirely, or leave a sliver no one would call an object
        if rows.size >= _MIN_VISIBLE * areas[index] and np.ptp(rows) > 1 and np.ptp(cols) > 1:
            box = (int(cols.min()) + 1, int(rows.min()) + 1, int(cols.max()) + 1, int(rows.max()) + 1)
            found.append((kind, box, rows.size < _DIFFICULT_BELOW * areas[index]))
    return np.clip(pixels, 0, 255).astype(np.uint8), found


def _draw_clutter(rng: np.random.Generator, pixels: np.ndarray, count: int) -> None:
    """``count`` thick strokes and small blobs in random colours (which may be object-like): not objects."""
    height, width = pixels.shape[:2]
    mask_image = Image.new("L", (width, height), 0)
    for _ in range(count):
        mask_image.paste(0, (0, 0, width, height))
        draw = ImageDraw.Draw(mask_image)
        x0, y0 = rng.uniform(0, width), rng.uniform(0, height)
        if rng.integers(2):
            x1, y1 = x0 + rng.normal(0, width / 3), y0 + rng.normal(0, height / 3)
            draw.line((x0, y0, x1, y1), fill=1, width=int(rng.integers(2, 6)))
        else:
            r = rng.uniform(2, min(height, width) / 12)
            draw.ellipse((x0 - r, y0 - r / 2, x0 + r, y0 + r / 2), fill=1)
        pixels[np.asarray(mask_image, dtype=bool)] = rng.uniform(0, 255, 3)


def _texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A field in [0, 1]: smooth noise, stripes at a random angle, or a linear gradient."""
    kind = rng.integers(3)
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    if kind == 0:
        cells = rng.random((int(rng.integers(3, 8)), int(rng.integers(3, 8))))
        coarse = Image.fromarray((cells * 255).astype(np.uint8))
        return np.asarray(coarse.resize((width, height), Image.BICUBIC), dtype=np.float64) / 255.0
    angle = rng.uniform(0, np.pi)
    along = x * np.cos(angle) + y * np.sin(angle)
    if kind == 1:
        return 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(3, 8) * along + rng.uniform(0, 2 * np.pi))
    return (along - along.min()) / max(float(np.ptp(along)), 1e-6)


def _distinct_colours(rng: np.random.Generator, count: int, min_distance: float) -> list[np.ndarray]:
    colours: list[np.ndarray] = []
    while len(colours) < count:
        candidate = rng.uniform(0, 255, 3)
        if all(np.linalg.norm(candidate - c) >= min_distance for c in colours):
            colours.append(candidate)
    return colours


def _far_colour(rng: np.random.Generator, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """A colour far from the segment low..high, on which every background pixel lies (up to noise)."""
    direction = high - low
    while True:
        candidate = rng.uniform(0, 255, 3)
        t = np.clip(np.dot(candidate - low, direction) / np.dot(direction, direction), 0.0, 1.0)
        if np.linalg.norm(candidate - (low + t * direction)) >= _MIN_COLOUR_DISTANCE:
            return candidate


def _place(
    rng: np.random.Generator,
    height: int,
    width: int,
    placed: list[tuple[int, int, int, int]],
    max_iou: float = _MAX_IOU,
    sides: tuple[float, float] = _SHAPE_SIDE,
) -> tuple[int, int, int, int] | None:
    """A square 0-based box ``(x0, y0, x1, y1)`` (exclusive end) fully inside the image, overlapping the
    boxes already placed by at most ``max_iou``; ``None`` when no such box was found."""
    shorter = min(height, width)
    for _ in range(50):
        side = max(4, int(rng.uniform(*sides) * shorter))
        x0, y0 = int(rng.integers(0, width - side + 1)), int(rng.integers(0, height - side + 1))
        box = (x0, y0, x0 + side, y0 + side)
        if all(_iou(box, other) <= max_iou for other in placed):
            return box
    return None


def _iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    w = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return w * h / union


def _shape_mask(kind: str, box: tuple[int, int, int, int], height: int, width: int, flip: bool) -> np.ndarray:
    mask = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(mask)
    x0, y0, x1, y1 = box[0], box[1], box[2] - 1, box[3] - 1  # PIL's shape corners are inclusive
    if kind == "circle":
        draw.ellipse((x0, y0, x1, y1), fill=1)
    elif kind == "square":
        draw.rectangle((x0, y0, x1, y1), fill=1)
    else:  # a triangle pointing up, or down when flipped
        apex, base = (y1, y0) if flip else (y0, y1)
        draw.polygon([((x0 + x1) / 2, apex), (x0, base), (x1, base)], fill=1)
    return np.asarray(mask, dtype=bool)


def _write_annotation(
    path: Path, filename: str, hw: tuple[int, int], objects: list[tuple[str, tuple[int, int, int, int], bool]]
) -> None:
    annotation = ET.Element("annotation")
    ET.SubElement(annotation, "folder").text = f"VOC{_YEAR}"
    ET.SubElement(annotation, "filename").text = filename
    ET.SubElement(ET.SubElement(annotation, "source"), "database").text = "MobileNeXt synthetic shapes"
    size = ET.SubElement(annotation, "size")
    for tag, value in (("width", hw[1]), ("height", hw[0]), ("depth", 3)):
        ET.SubElement(size, tag).text = str(value)
    ET.SubElement(annotation, "segmented").text = "0"
    for name, box, difficult in objects:
        obj = ET.SubElement(annotation, "object")
        for tag, value in (
            ("name", name),
            ("pose", "Unspecified"),
            ("truncated", "0"),
            ("difficult", str(int(difficult))),
        ):
            ET.SubElement(obj, tag).text = value
        bndbox = ET.SubElement(obj, "bndbox")
        for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), box):
            ET.SubElement(bndbox, tag).text = str(value)
    tree = ET.ElementTree(annotation)
    ET.indent(tree, space="\t")
    tree.write(path, encoding="utf-8")


def _write_list(path: Path, ids: list[str]) -> None:
    path.write_text("".join(f"{i}\n" for i in ids))
