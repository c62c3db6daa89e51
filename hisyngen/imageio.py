"""Reading and writing images and masks; every array in hisyngen is RGB uint8 or an index mask.

Images decode with OpenCV (fast) and are normalised here, once: grayscale is replicated to three
channels, alpha is composited onto white (transparent = slide background), 16-bit is scaled to 8-bit.
Masks decode with Pillow because OpenCV expands palette PNGs to colours; palette, grayscale and small
16-bit masks give their indices directly, RGB masks are mapped back through the dataset palette.
Writers encode PNG to bytes and rename into place so that no reader ever sees half a file.

Every reader first takes the size from the file header and refuses an image over :func:`max_pixels`
(``HISYNGEN_MAX_PIXELS``, default :data:`DEFAULT_MAX_PIXELS`) as an :class:`ImageReadError`, before
any pixel is decoded: a forged header cannot make a worker allocate gigabytes.
"""

from __future__ import annotations

import functools
import io
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from hisyngen.errors import ImageReadError

if TYPE_CHECKING:
    from hisyngen.spec import DatasetSpec

cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)  # decoding problems become ImageReadError, not stray stderr lines

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")

DEFAULT_MAX_PIXELS = 25_000_000
"""Largest image (width x height) hisyngen decodes. Source patches of the supported datasets are at
most a few megapixels; 25 MP (5000 x 5000, 75 MB as RGB) leaves ample room while keeping one decode
per worker far below memory limits. A bigger image is a slide region to tile first, not a patch."""
MAX_PIXELS_ENV = "HISYNGEN_MAX_PIXELS"


def max_pixels() -> int:
    """The pixel cap: ``$HISYNGEN_MAX_PIXELS`` (an integer such as 100000000) or the default."""
    text = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(float(text))
    except ValueError:
        value = 0
    if value < 1:
        from hisyngen.errors import HisynError

        raise HisynError(f"{MAX_PIXELS_ENV}={text!r} is not a positive number of pixels")
    return value


def check_pixels(width: int, height: int, name: str | Path) -> None:
    """Refuse a ``width`` x ``height`` image over the pixel cap (an :class:`ImageReadError` naming it)."""
    cap = max_pixels()
    if width * height > cap:
        raise ImageReadError(name, f"image is {width}x{height} ({width * height / 1e6:.1f} megapixels), over the "
                                   f"{cap / 1e6:g} megapixel cap (set {MAX_PIXELS_ENV} to allow more)")


def _bomb(name: str | Path, Image) -> ImageReadError:
    """Pillow refused the header before giving a size: far over any cap."""
    limit = 2 * (Image.MAX_IMAGE_PIXELS or 0) / 1e6
    return ImageReadError(name, f"image is over {limit:.0f} megapixels, over the {max_pixels() / 1e6:g} megapixel cap "
                                f"(set {MAX_PIXELS_ENV} to allow more)")


@functools.lru_cache(maxsize=None)
def _pillow():
    """Pillow, with its own decompression-bomb warning silenced: :func:`check_pixels` (lower) decides."""
    import warnings

    from PIL import Image

    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
    return Image


def _header_size(buffer: np.ndarray, name: str | Path) -> tuple[int, int] | None:
    """(width, height) from the encoded bytes' header (Pillow reads only the header), or None when
    Pillow does not know the format (OpenCV may still decode it)."""
    Image = _pillow()
    try:
        with Image.open(io.BytesIO(buffer)) as im:
            return im.size
    except Image.DecompressionBombError:  # beyond even Pillow's own limit
        raise _bomb(name, Image) from None
    except Exception:  # unknown or damaged header: left to OpenCV, which reports it
        return None


def is_image_file(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES and not Path(path).name.startswith(".")


def decode_raw(data: bytes | np.ndarray, name: str | Path = "<bytes>") -> np.ndarray:
    """Decode encoded image bytes as stored (OpenCV channel order, 8 or 16 bit, 1/3/4 channels)."""
    buffer = np.frombuffer(data, np.uint8) if isinstance(data, (bytes, bytearray, memoryview)) else data
    if buffer.size == 0:
        raise ImageReadError(name, "empty file")
    size = _header_size(buffer, name)
    if size is not None:
        check_pixels(*size, name)
    try:
        array = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:  # e.g. a header beyond OpenCV's own size limit
        raise ImageReadError(name, f"cannot decode image ({' '.join(str(exc).split())[-160:]})") from None
    if array is None:
        raise ImageReadError(name, "cannot decode image (truncated, corrupt or unsupported format)")
    return array


def read_raw(path: str | Path) -> np.ndarray:
    """:func:`decode_raw` of a file; raises :class:`ImageReadError` naming the file."""
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError as exc:
        raise ImageReadError(path, f"cannot read file ({exc.strerror or exc})") from None
    return decode_raw(data, path)


def decode_rgb(data: bytes | np.ndarray, name: str | Path = "<bytes>") -> np.ndarray:
    """Decode encoded image bytes to an RGB uint8 array of shape (H, W, 3)."""
    return to_rgb8(decode_raw(data, name), name)


def read_rgb(path: str | Path) -> np.ndarray:
    """Read an image file as RGB uint8 (H, W, 3); raises :class:`ImageReadError` naming the file."""
    return to_rgb8(read_raw(path), path)


def conversion_note(array: np.ndarray) -> str | None:
    """What :func:`to_rgb8` changes about a raw decoded array, or None for plain 8-bit colour."""
    notes = []
    if array.dtype == np.uint16:
        notes.append("16-bit image: scaled to 8-bit")
    channels = 1 if array.ndim == 2 else array.shape[2]
    if channels == 1:
        notes.append("grayscale image: replicated to RGB (H&E synthesis expects colour)")
    elif channels == 4:
        notes.append("image with alpha: composited onto white")
    return "; ".join(notes) or None


def to_rgb8(array: np.ndarray, name: str | Path = "<array>") -> np.ndarray:
    """Normalise a decoded OpenCV array (BGR/BGRA/gray, 8 or 16 bit) to RGB uint8."""
    if array.dtype == np.uint16:
        array = ((array.astype(np.uint32) + 128) // 257).astype(np.uint8)
    elif array.dtype != np.uint8:
        raise ImageReadError(name, f"unsupported pixel type {array.dtype} (need 8- or 16-bit)")
    if array.ndim == 2:
        return np.ascontiguousarray(np.repeat(array[:, :, None], 3, axis=2))
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise ImageReadError(name, f"unsupported image shape {array.shape}")
    if array.shape[2] == 1:
        return np.ascontiguousarray(np.repeat(array, 3, axis=2))
    if array.shape[2] == 4:
        alpha = array[:, :, 3:4].astype(np.uint16)
        bgr = array[:, :, :3].astype(np.uint16)
        array = ((bgr * alpha + 255 * (255 - alpha) + 127) // 255).astype(np.uint8)
    return np.ascontiguousarray(array[:, :, ::-1])


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) from the file header, without decoding pixels; over the pixel cap is an error."""
    Image = _pillow()
    try:
        with Image.open(path) as im:
            size = im.size
    except Image.DecompressionBombError:
        raise _bomb(path, Image) from None
    except (OSError, ValueError) as exc:  # UnidentifiedImageError is an OSError
        raise ImageReadError(path, f"cannot read image header ({exc})") from None
    check_pixels(*size, path)
    return size


def read_mask(path: str | Path, spec: "DatasetSpec | None" = None) -> np.ndarray:
    """Read a mask as class indices (H, W) uint8.

    Palette ("P"), grayscale and 16-bit masks hold indices already; RGB masks are mapped through
    ``spec``'s palette (a colour not in it is an error naming the file).
    """
    from PIL import UnidentifiedImageError

    Image = _pillow()
    try:
        with Image.open(path) as im:
            check_pixels(*im.size, path)  # before load(): the header alone decides
            im.load()
            mode = im.mode
            if mode in ("P", "L", "1"):  # "1" gives booleans: 0/1 indices
                return np.array(im).astype(np.uint8, copy=False)
            if mode in ("I;16", "I;16B", "I;16L", "I"):
                values = np.array(im)
                if values.size and (values.min() < 0 or values.max() > 255):
                    raise ImageReadError(path, f"mask values {values.min()}..{values.max()} do not fit 8-bit indices")
                return values.astype(np.uint8)
            if mode in ("RGB", "RGBA"):
                if spec is None:
                    raise ImageReadError(path, "RGB mask needs a dataset palette to map colours to classes")
                return rgb_mask_to_index(np.array(im.convert("RGB")), spec, path)
            raise ImageReadError(path, f"unsupported mask mode {mode!r} (need palette, grayscale or RGB)")
    except ImageReadError:
        raise
    except Image.DecompressionBombError:
        raise _bomb(path, Image) from None
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
        raise ImageReadError(path, f"cannot decode mask ({exc})") from None


def rgb_mask_to_index(rgb: np.ndarray, spec: "DatasetSpec", name: str | Path = "<mask>") -> np.ndarray:
    """Map an RGB colour mask to indices through the spec palette."""
    codes = (rgb[..., 0].astype(np.int32) << 16) | (rgb[..., 1].astype(np.int32) << 8) | rgb[..., 2]
    out = np.full(codes.shape, 255, np.uint8)
    found = np.zeros(codes.shape, bool)
    indices = list(range(spec.num_classes)) + [spec.background_index]
    for index, colour in zip(indices, spec.palette):
        code = (colour[0] << 16) | (colour[1] << 8) | colour[2]
        hit = codes == code
        out[hit] = index
        found |= hit
    if not found.all():
        y, x = np.argwhere(~found)[0]
        raise ImageReadError(name, f"RGB mask colour {tuple(int(v) for v in rgb[y, x])} at ({x}, {y}) is not in the {spec.name} palette")
    return out


def encode_rgb_png(image: np.ndarray) -> bytes:
    """PNG bytes of an RGB uint8 image (OpenCV: ~4x faster than Pillow at equal size)."""
    ok, buffer = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))  # 20x faster than a ::-1 copy
    if not ok:  # pragma: no cover - OpenCV only fails on invalid arrays
        raise ValueError("PNG encoding failed")
    return buffer.tobytes()


def encode_mask_png(mask: np.ndarray, palette: list[int]) -> bytes:
    """PNG bytes of an index mask as a palette ("P") image with a 768-entry flat palette."""
    from PIL import Image

    if mask.dtype != np.uint8 or mask.ndim != 2:
        raise ValueError(f"mask must be a 2-D uint8 array, got {mask.dtype} {mask.shape}")
    image = Image.fromarray(mask)  # "L"; putpalette turns it into "P" keeping the indices
    image.putpalette(palette)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path`` and rename it into place."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))
