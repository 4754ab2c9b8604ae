"""Loading the user's images, with clear errors, and turning them into model inputs.

Resize policy: the longer side becomes `size` (default 512), the aspect ratio is kept (every zoo
model takes any input size), and the ImageNet mean/std normalisation is applied.
"""

from __future__ import annotations

import contextlib
import os
import stat
import warnings
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np

if TYPE_CHECKING:  # torch is imported where a tensor is made: the GUI loads images before torch is up
    import torch
    from PIL.Image import Image as PILImage

from fishspine.models.normalisation import IMAGENET_MEAN, IMAGENET_STD

# Pillow's own decompression-bomb limit, where it only warns (it raises at twice this): refused here,
# from the header, before any pixel is decoded.
MAX_PIXELS = 89_478_485
MAX_FILE_BYTES = 512 * 1024**2
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
# The only decoders Pillow may use: raster formats decoded in-process. Anything else (EPS/PostScript,
# which Pillow hands to Ghostscript, PDF, ICNS, ...) is refused whatever the file is called.
RASTER_FORMATS = ("PNG", "JPEG", "BMP", "TIFF", "WEBP", "GIF")
_FORMATS_TEXT = "PNG, JPEG, BMP, TIFF, WebP or GIF"


class ImageError(ValueError):
    """An image that cannot be used; the message says what is wrong and what to do."""


def _file_kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISFIFO, "named pipe"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
        (stat.S_ISSOCK, "socket"),
    ):
        if test(mode):
            return name
    return "special file"


def _checked_stat(path: Path, st: os.stat_result) -> None:
    if stat.S_ISDIR(st.st_mode):
        raise ImageError(f"{path}: is a folder; give image files (PNG, JPEG, ...)")
    if not stat.S_ISREG(st.st_mode):
        raise ImageError(
            f"{path}: not a regular file (a {_file_kind(st.st_mode)}); give an image file (PNG, JPEG, ...)"
        )
    if st.st_size > MAX_FILE_BYTES:
        raise ImageError(
            f"{path}: {st.st_size / 1024**2:,.0f} MB is too large for an image file "
            f"(limit {MAX_FILE_BYTES // 1024**2} MB); downscale or re-encode it first"
        )


def _open_regular_file(path: Path) -> BinaryIO:
    """`path` opened for reading, once it is known to be a regular file of a bounded size.

    Checked before opening (a FIFO would block, a device never ends) and again on the open
    descriptor, so a file swapped in between is caught too.
    """
    try:
        before = os.stat(path)  # follows links: a link to /dev/zero is judged as /dev/zero
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except OSError as exc:
        raise ImageError(f"{path}: cannot be read ({exc.strerror})") from exc
    _checked_stat(path, before)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise ImageError(f"{path}: cannot be read ({exc.strerror})") from exc
    fh = os.fdopen(fd, "rb")
    try:
        after = os.fstat(fh.fileno())
        _checked_stat(path, after)
        if (after.st_dev, after.st_ino) != (before.st_dev, before.st_ino):
            raise ImageError(f"{path}: the file changed while it was being opened; try again")
    except BaseException:
        fh.close()
        raise
    return fh


@contextlib.contextmanager
def open_raster(path: str | Path) -> Iterator[PILImage]:
    """`path` opened by Pillow, for reading inside the `with` block; ImageError when it is not usable.

    Only regular files of at most MAX_FILE_BYTES, decoded as one of RASTER_FORMATS, of at most
    MAX_PIXELS pixels. Decoding errors inside the block (truncated data) become ImageError too.
    """
    from PIL import Image, UnidentifiedImageError

    # Pillow only warns between its limit and twice it, then decodes. Made an error process-wide, checked
    # on every call: a warnings.catch_warnings() here would race with the app's loader threads, and
    # pytest resets the filters around each test.
    bomb_filter = ("error", None, Image.DecompressionBombWarning, None, 0)
    if not warnings.filters or warnings.filters[0] != bomb_filter:
        warnings.filterwarnings("error", category=Image.DecompressionBombWarning)
    path = Path(path)
    with _open_regular_file(path) as fh:
        try:
            with Image.open(fh, formats=RASTER_FORMATS) as img:
                w, h = img.size
                if w * h > MAX_PIXELS:
                    raise ImageError(
                        f"{path}: {w}x{h} pixels is too large (limit {MAX_PIXELS:,} pixels); downscale it first"
                    )
                yield img
        except UnidentifiedImageError as exc:
            raise ImageError(
                f"{path}: not an image PIL can read as {_FORMATS_TEXT} (other formats, such as "
                "PostScript/EPS, are refused); convert it to PNG"
            ) from exc
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageError(
                f"{path}: too large, refused as a possible decompression bomb ({exc}); downscale it first"
            ) from exc
        except (OSError, SyntaxError) as exc:  # truncated / corrupt data
            raise ImageError(f"{path}: the image data is corrupt or truncated ({exc})") from exc


def file_in_folder(folder: str | Path, name: Any) -> Path | None:
    """`folder/name` when `name` is a relative path (POSIX style, as a dataset names its images) that stays
    inside `folder`; None for anything else: not text, empty, absolute, or climbing out with "..".
    """
    if not isinstance(name, str) or not name:
        return None
    rel = PurePosixPath(name)
    if rel.is_absolute() or ".." in rel.parts:
        return None
    return Path(folder).joinpath(*rel.parts)


def load_image(path: str | Path) -> np.ndarray:
    """The image at `path` as an RGB uint8 array (H, W, 3); ImageError naming the file and what to do."""
    with open_raster(path) as img:
        img.load()
        return np.asarray(img.convert("RGB"))


def resize_longer_side(image: np.ndarray, size: int) -> np.ndarray:
    """`image` scaled so its longer side is `size` (aspect kept)."""
    from PIL import Image

    h, w = image.shape[:2]
    scale = size / max(h, w)
    new = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(image).resize(new, Image.BILINEAR))


def to_input(image: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """An RGB uint8 (H, W, 3) array as a normalised (1, 3, H, W) float tensor on `device`."""
    import torch

    t = torch.from_numpy(np.array(image, dtype=np.uint8, copy=True)).to(device).permute(2, 0, 1).float().div_(255)
    mean = torch.tensor(IMAGENET_MEAN, device=t.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=t.device).view(3, 1, 1)
    return ((t - mean) / std).unsqueeze(0)


def prepare(
    path_or_array: str | Path | np.ndarray, size: int = 512, device: torch.device | str = "cpu"
) -> tuple[np.ndarray, torch.Tensor]:
    """(resized RGB array for display, model input tensor) for a path or an RGB array."""
    image = load_image(path_or_array) if not isinstance(path_or_array, np.ndarray) else path_or_array
    shown = resize_longer_side(image, size)
    return shown, to_input(shown, device)


def sample_image(size: int = 256, seed: int = 0) -> np.ndarray:
    """A generated test picture (shapes of several sizes on a textured background)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    img = np.stack([0.5 + 0.2 * np.sin(8 * xx), 0.5 + 0.2 * np.cos(6 * yy), 0.45 + 0.1 * xx], -1)
    img += rng.normal(0, 0.03, img.shape)
    for cx, cy, r, color in (
        (0.3, 0.35, 0.18, (0.9, 0.2, 0.1)),
        (0.72, 0.6, 0.1, (0.1, 0.3, 0.9)),
        (0.5, 0.8, 0.05, (0.95, 0.85, 0.1)),
    ):
        img[(xx - cx) ** 2 + (yy - cy) ** 2 < r**2] = color
    img[int(0.6 * size) : int(0.75 * size), int(0.1 * size) : int(0.3 * size)] = (0.2, 0.7, 0.3)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)
