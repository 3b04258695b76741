"""Read any image the same way everywhere (training, validation, detection, prediction): RGB, uint8, decoded.

``convert("RGB")`` alone is wrong for images with more than 8 bits per sample: it clips a 16-bit image's
0..65535 to 0..255 (almost white) and truncates a float image's [0, 1] to 0 (black). So :func:`read_image`
scales by the sample type instead, and numpy arrays follow the same rules:

- 16-bit integers (PIL modes ``I;16``, ``I;16B``, ``I;16L``, ``I;16N``; ``uint16`` arrays): 0..65535 -> 0..255.
- PIL mode ``I`` (32-bit integers; some Pillow versions open 16-bit PNGs so): taken as 16-bit like the above,
  values below 0 or above 65535 clipped. A 32-bit image is never rescaled by its own range, so every image of
  a dataset is scaled alike.
- floats (mode ``F``; float arrays): the float-image convention [0, 1] -> 0..255, clipped outside. A float
  image whose maximum is above 1 holds 0..255 values (e.g. an 8-bit image saved as float) and is only clipped
  and rounded. NaN and infinite values read as 0.
- ``bool`` arrays: ``True`` -> 255. ``uint8`` arrays: as they are.
- everything else (``1``, ``L``, ``P``, ``LA``, ``RGB``, ``RGBA``, ``CMYK``, ...): what ``convert("RGB")``
  gives (alpha is dropped, not composited).

Arrays are ``HxW`` (grey) or ``HxWxC`` with ``C`` 1 (grey), 2 (grey + alpha), 3 (RGB) or 4 (RGBA); other
integer dtypes are refused rather than guessed at.

PIL's guard against decompression bombs only warns between 1x and 2x ``PIL.Image.MAX_IMAGE_PIXELS`` and
raises above; here one limit applies, ``PIL.Image.MAX_IMAGE_PIXELS`` itself, read at each call (raise it, or
set it to ``None``, to allow larger images): a file or PIL image with more pixels is refused with an
:class:`~mobilenext.errors.ImageError`, like a corrupt file, without the warning. Arrays are already in
memory and are not limited.
"""

from __future__ import annotations

import re
import struct
import warnings
import zlib
from collections.abc import Iterable
from contextlib import nullcontext
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image

from ..errors import ImageError, MobileNeXtError

__all__ = ["IMAGE_EXTENSIONS", "find_images", "read_image"]

ImageSource = str | Path | IO[bytes] | Image.Image | np.ndarray

# What a folder given to `predict` / `detect predict` is searched for.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")

# What PIL raises for malformed files, in identification or decoding (DecompressionBombError is handled apart).
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error, zlib.error)
_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def find_images(paths: Iterable[str | Path]) -> list[Path]:
    """Expand folders (recursively) into their image files (by extension, sorted); files are kept as given. A file
    named twice (also through a link, or inside a folder also given) is read once."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found += sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_EXTENSIONS and f.is_file())
        elif p.exists():
            found.append(p)
        else:
            raise MobileNeXtError(f"{p} does not exist.")
    seen: set[Path] = set()
    return [p for p in found if not (p.resolve() in seen or seen.add(p.resolve()))]


def read_image(image: ImageSource, *, name: str | None = None) -> Image.Image:
    """A fully decoded RGB uint8 copy of ``image``: a path, a binary file object, a PIL image or a numpy array.

    Samples are scaled as the module docstring says. ``name`` is what error messages call the image (default:
    the path, or the file object's or PIL image's file name). A file object is read, not closed. Raises
    :class:`~mobilenext.errors.ImageError` for a missing or unreadable file, an image over
    ``PIL.Image.MAX_IMAGE_PIXELS`` pixels, or an array of unsupported shape or dtype.
    """
    if isinstance(image, np.ndarray):
        return _array_to_rgb(image, name or "the numpy array")
    if isinstance(image, Image.Image):
        return _decode(image, name or getattr(image, "filename", "") or "the image")
    if hasattr(image, "read"):
        name = name or str(getattr(image, "name", "") or "the image file")
        return _decode(image, name)
    path = Path(image)
    if not path.is_file():
        raise ImageError(f"image {name or path} does not exist.")
    return _decode(path, name or str(path))


def _decode(source: Path | IO[bytes] | Image.Image, name: str) -> Image.Image:
    try:
        with warnings.catch_warnings():  # 1x..2x the limit: refused below, so PIL's warning is only noise
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            # a PIL image (perhaps opened lazily, as Hugging Face datasets do) is the caller's: not closed
            with nullcontext(source) if isinstance(source, Image.Image) else Image.open(source) as opened:
                _check_size(opened.size, name)
                opened.load()  # decode fully, so a truncated file fails here
                return _to_rgb(opened)
    except ImageError:
        raise
    except Image.DecompressionBombError as e:  # over 2x the limit: PIL refuses before we see the size
        found = re.search(r"\((\d+) pixels\)", str(e))
        error = _too_large(int(found.group(1)) if found else None, name)
    except _DECODE_ERRORS as e:
        error = ImageError(f"{name} is not a readable image ({type(e).__name__}).")
    raise error from None


def _check_size(size: tuple[int, int], name: str) -> None:
    limit = Image.MAX_IMAGE_PIXELS  # read now, so a user's change applies
    if limit is not None and size[0] * size[1] > limit:
        raise _too_large(size[0] * size[1], name)


def _too_large(pixels: int | None, name: str) -> ImageError:
    limit = Image.MAX_IMAGE_PIXELS
    count = f"{pixels:,} pixels" if pixels is not None else "more than twice the limit"
    limit_text = f"{int(limit):,}" if limit is not None else "None"
    return ImageError(
        f"{name} is too large to decode safely ({count}; the limit is {limit_text}, PIL.Image.MAX_IMAGE_PIXELS)."
    )


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in _SIXTEEN_BIT_MODES:
        return _array_to_rgb(np.clip(np.asarray(image), 0, 65535).astype(np.uint16), "image")
    if image.mode == "F":
        return _array_to_rgb(np.asarray(image), "image")
    return image.convert("RGB")


def _array_to_rgb(array: np.ndarray, name: str) -> Image.Image:
    if not (array.ndim == 2 or (array.ndim == 3 and 1 <= array.shape[2] <= 4)) or array.size == 0:
        raise ImageError(f"{name} of shape {tuple(array.shape)} is not an image; pass HxW or HxWxC (C = 1..4) pixels.")
    if array.ndim == 3:  # grey (+ alpha) or RGB (+ alpha); alpha is dropped, as convert("RGB") does
        array = array[..., :3] if array.shape[2] >= 3 else array[..., 0]
    if array.dtype == np.uint8:
        pixels = array
    elif array.dtype == np.bool_:
        pixels = array.astype(np.uint8) * 255
    elif array.dtype.kind == "u" and array.dtype.itemsize == 2:
        pixels = ((array.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)  # round(v / 257)
    elif array.dtype.kind == "f":
        values = np.where(np.isfinite(array), array, 0)
        if values.max() <= 1:
            values = values.astype(np.float32) * 255
        pixels = np.rint(np.clip(values, 0, 255)).astype(np.uint8)
    else:
        raise ImageError(
            f"{name} of dtype {array.dtype} is not an image; pass uint8 (0..255), uint16 (0..65535), "
            "bool or float (0..1) pixels."
        )
    image = Image.fromarray(np.ascontiguousarray(pixels))
    return image if image.mode == "RGB" else image.convert("RGB")
