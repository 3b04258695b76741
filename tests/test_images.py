"""read_image: 16-bit and float images scaled (not clipped), one pixel limit, the same reading in every dataset."""

from __future__ import annotations

import io
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import make_image_folder
from mobilenext.data import open_datasets
from mobilenext.data.datasets import UnreadableImage
from mobilenext.data.images import read_image
from mobilenext.detection.data import VOCDetection
from mobilenext.detection.shapes import SHAPES_CLASSES, write_shapes_voc
from mobilenext.errors import ImageError

SIXTEEN_BIT = np.array([[0, 257, 32768, 65535]], dtype=np.uint16)
SIXTEEN_BIT_AS_8 = [0, 1, 128, 255]  # round(v / 257)


def grey(image: Image.Image) -> list[int]:
    """The values of an RGB image whose channels are equal, row-major."""
    pixels = np.asarray(image)
    assert image.mode == "RGB" and pixels.dtype == np.uint8
    assert (pixels == pixels[..., :1]).all(), "a grey image must read as equal channels"
    return pixels[..., 0].ravel().tolist()


@pytest.fixture
def no_bomb_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        yield


def test_16bit_png_is_scaled_not_clipped(tmp_path):
    path = tmp_path / "depth.png"
    gradient = np.linspace(0, 65535, 64 * 8).round().astype(np.uint16).reshape(8, 64)
    Image.fromarray(gradient).save(path)
    with Image.open(path) as opened:
        assert opened.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I")  # what Pillow gives a 16-bit PNG
    values = np.array(grey(read_image(path))).reshape(8, 64)
    assert np.abs(values - gradient / 257).max() <= 0.5 + 1e-9  # rounded, over the whole range
    Image.fromarray(SIXTEEN_BIT).save(path)
    assert grey(read_image(path)) == SIXTEEN_BIT_AS_8  # 65535 -> 255, 32768 -> 128


@pytest.mark.parametrize("mode", ["I;16", "I;16B", "I;16L", "I;16N"])
def test_16bit_pil_modes_are_scaled(mode):
    dtype = ">u2" if mode == "I;16B" else "<u2" if mode in ("I;16", "I;16L") else "=u2"
    image = Image.frombytes(mode, (4, 1), SIXTEEN_BIT.astype(dtype).tobytes())
    assert grey(read_image(image)) == SIXTEEN_BIT_AS_8


def test_mode_i_is_taken_as_16_bit_and_clipped():
    image = Image.fromarray(np.array([[0, 257, 32768, 65535, 70000, -5]], dtype=np.int32))
    assert image.mode == "I"
    assert grey(read_image(image)) == [*SIXTEEN_BIT_AS_8, 255, 0]


def test_float_tiff_in_unit_range_reads_as_0_to_255(tmp_path):
    path = tmp_path / "mask.tif"
    Image.fromarray(np.array([[0.0, 0.25, 0.5, 1.0]], dtype=np.float32)).save(path)
    with Image.open(path) as opened:
        assert opened.mode == "F"
    assert grey(read_image(path)) == [0, 64, 128, 255]


def test_float_tiff_holding_0_to_255_values_is_clipped_not_scaled(tmp_path):
    path = tmp_path / "float255.tif"
    Image.fromarray(np.array([[0.0, 100.4, 254.6, 255.0, 300.0, -3.0]], dtype=np.float32)).save(path)
    assert grey(read_image(path)) == [0, 100, 255, 255, 255, 0]


@pytest.mark.parametrize(
    "array, expected",
    [
        (SIXTEEN_BIT, SIXTEEN_BIT_AS_8),
        (SIXTEEN_BIT.astype(">u2"), SIXTEEN_BIT_AS_8),
        (SIXTEEN_BIT[..., None], SIXTEEN_BIT_AS_8),  # HxWx1
        (np.array([[True, False, True]]), [255, 0, 255]),
        (np.array([[-0.5, 0.0, 0.5, 1.0]], dtype=np.float32), [0, 0, 128, 255]),
        (np.array([[0.0, 0.5, 1.0]], dtype=np.float16), [0, 128, 255]),
        (np.array([[0.0, 127.6, 255.0, 400.0]], dtype=np.float64), [0, 128, 255, 255]),
        (np.array([[np.nan, np.inf, 0.5]], dtype=np.float32), [0, 0, 128]),
        (np.array([[0, 7, 255]], dtype=np.uint8), [0, 7, 255]),
    ],
)
def test_arrays_follow_the_same_rules(array, expected):
    assert grey(read_image(array)) == expected


def test_colour_arrays_keep_rgb_and_drop_alpha():
    rgba = np.zeros((2, 3, 4), dtype=np.uint16)
    rgba[..., 0], rgba[..., 1], rgba[..., 2], rgba[..., 3] = 65535, 32768, 0, 12345
    assert np.asarray(read_image(rgba)).reshape(-1, 3).tolist() == [[255, 128, 0]] * 6
    rgb = np.zeros((2, 2, 3), dtype=np.float32) + np.float32([1.0, 0.5, 0.0])
    assert np.asarray(read_image(rgb)).reshape(-1, 3).tolist() == [[255, 128, 0]] * 4
    grey_alpha = np.stack([np.full((2, 2), 0.5), np.zeros((2, 2))], axis=-1)
    assert grey(read_image(grey_alpha)) == [128] * 4


@pytest.mark.parametrize(
    "array, match",
    [
        (np.zeros((2, 2, 5), np.uint8), r"shape \(2, 2, 5\)"),
        (np.zeros((3,), np.uint8), r"shape \(3,\)"),
        (np.zeros((0, 4), np.uint8), r"shape \(0, 4\)"),
        (np.zeros((2, 2), np.int64), "dtype int64"),
        (np.zeros((2, 2), np.complex64), "dtype complex64"),
    ],
)
def test_unsupported_arrays_are_an_image_error(array, match):
    with pytest.raises(ImageError, match=match):
        read_image(array)


@pytest.mark.parametrize("mode", ["1", "L", "P", "LA", "RGBA", "CMYK", "RGB"])
def test_colour_modes_read_as_convert_rgb_gives(mode):
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (5, 6, 3), dtype=np.uint8)).convert(mode)
    out = read_image(image)
    assert out.mode == "RGB" and out.tobytes() == image.convert("RGB").tobytes()
    assert out is not image


@pytest.mark.parametrize("limit", [300, 150])  # 1x..2x the limit (PIL warns), over 2x (PIL raises)
def test_an_image_over_the_pixel_limit_is_refused_naming_the_limit(tmp_path, monkeypatch, no_bomb_warnings, limit):
    path = tmp_path / "big.png"
    Image.new("RGB", (20, 20)).save(path)  # 400 pixels
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
    message = f"{path} is too large to decode safely (400 pixels; the limit is {limit}, PIL.Image.MAX_IMAGE_PIXELS)."
    with pytest.raises(ImageError, match=f"^{re.escape(message)}$"):
        read_image(path)
    with pytest.raises(ImageError, match="too large"), path.open("rb") as f:
        read_image(f)
    with pytest.raises(ImageError, match="too large"):
        read_image(Image.new("L", (20, 20)))
    assert read_image(np.zeros((20, 20), np.uint8)).size == (20, 20)  # arrays are already in memory
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 400)  # the limit is read at each call
    assert read_image(path).size == (20, 20)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    assert read_image(path).size == (20, 20)


def test_the_limit_message_uses_thousands_separators(tmp_path, monkeypatch):
    path = tmp_path / "wide.png"
    Image.new("L", (2000, 1001)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000_000)
    with pytest.raises(ImageError, match=r"\(2,002,000 pixels; the limit is 1,000,000, PIL.Image.MAX_IMAGE_PIXELS\)"):
        read_image(path)


def test_missing_corrupt_and_truncated_files_keep_their_sentences(tmp_path):
    with pytest.raises(ImageError, match=r"^image .*nowhere\.png does not exist\.$"):
        read_image(tmp_path / "nowhere.png")
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"this is not a jpeg")
    with pytest.raises(ImageError, match=r"broken\.jpg is not a readable image \(UnidentifiedImageError\)\.$"):
        read_image(str(broken))
    whole = tmp_path / "whole.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(whole)
    cut = tmp_path / "cut.png"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(ImageError, match=r"cut\.png is not a readable image \(OSError\)\.$"):
        read_image(cut)  # the header is intact: only decoding all of it finds the damage
    with pytest.raises(ImageError, match=r"^shard/7\.png is not a readable image"):
        read_image(io.BytesIO(cut.read_bytes()), name="shard/7.png")


def test_a_file_object_is_read_and_left_open(tmp_path):
    path = tmp_path / "depth.png"
    Image.fromarray(SIXTEEN_BIT).save(path)
    with path.open("rb") as f:
        assert grey(read_image(f)) == SIXTEEN_BIT_AS_8
        assert not f.closed


def _item(dataset, name: str):
    index = next(i for i in range(len(dataset)) if Path(dataset.filename(i)).name == name)
    return dataset[index]


def test_image_folder_datasets_read_16_bit_images_and_report_too_large_ones(tmp_path, monkeypatch, no_bomb_warnings):
    root = make_image_folder(tmp_path, classes=("ant", "bee"), per_class=2, size=20, splits=("train", "val"))
    Image.fromarray(np.full((20, 20), 32768, np.uint16)).save(root / "train" / "ant" / "depth.png")
    Image.new("RGB", (30, 20)).save(root / "train" / "bee" / "big.png")  # 600 pixels
    data = open_datasets(str(root))
    image, target = _item(data.train, "depth.png")
    assert target == 0 and grey(image) == [128] * 400
    assert _item(data.train, "big.png")[0].size == (30, 20)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)
    with pytest.raises(UnreadableImage, match=r"big\.png is too large to decode safely \(600 pixels; the limit is 500"):
        _item(data.train, "big.png")
    assert _item(data.train, "depth.png")[0].size == (20, 20)  # 400 pixels: under the limit


def test_voc_reader_reads_16_bit_images_and_reports_too_large_ones(tmp_path, monkeypatch, no_bomb_warnings):
    write_shapes_voc(tmp_path, train_images=2, test_images=0, size=(20, 20), seed=3)
    jpeg = tmp_path / "VOCdevkit/VOC2007/JPEGImages/000001.jpg"
    Image.fromarray(np.full((20, 20), 65535, np.uint16)).save(jpeg, format="PNG")  # the reader goes by content
    ds = VOCDetection(tmp_path, (("2007", "trainval"),), classes=SHAPES_CLASSES)
    image, _ = ds[0]
    assert image.shape == (3, 20, 20) and bool((image == 1.0).all())  # white, as 65535 is
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 300)
    too_large = r"000002\.jpg is too large to decode safely \(400 pixels; the limit is 300,"
    with pytest.raises(UnreadableImage, match=too_large):
        ds[1]
