"""Loading the user's images, with clear errors, and turning them into model inputs.

Resize policy: the longer side becomes `size` (default 512), the aspect ratio is kept (every zoo
model takes any input size), and the ImageNet mean/std normalisation is applied.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch is imported where a tensor is made: the GUI loads images before torch is up
    import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MAX_PIXELS = 100_000_000  # refuse decompression bombs before decoding
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


class ImageError(ValueError):
    """An image that cannot be used; the message says what is wrong and what to do."""


def load_image(path: str | Path) -> np.ndarray:
    """The image at `path` as an RGB uint8 array (H, W, 3)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.exists():
        raise ImageError(f"{path}: no such file")
    if path.is_dir():
        raise ImageError(f"{path}: is a folder; give image files (PNG, JPEG, ...)")
    try:
        with Image.open(path) as img:
            w, h = img.size
            if w * h > MAX_PIXELS:
                raise ImageError(f"{path}: {w}x{h} pixels is too large (limit {MAX_PIXELS:,} pixels); "
                                 "downscale it first")
            img.load()
            return np.asarray(img.convert("RGB"))
    except UnidentifiedImageError as exc:
        raise ImageError(f"{path}: not an image PIL can read (PNG, JPEG, BMP, TIFF, WebP ...)") from exc
    except (OSError, SyntaxError) as exc:  # truncated / corrupt data
        raise ImageError(f"{path}: the image data is corrupt or truncated ({exc})") from exc
    except Image.DecompressionBombError as exc:
        raise ImageError(f"{path}: refused as a decompression bomb ({exc})") from exc


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


def prepare(path_or_array: str | Path | np.ndarray, size: int = 512,
            device: torch.device | str = "cpu") -> tuple[np.ndarray, torch.Tensor]:
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
    for cx, cy, r, color in ((0.3, 0.35, 0.18, (0.9, 0.2, 0.1)), (0.72, 0.6, 0.1, (0.1, 0.3, 0.9)),
                             (0.5, 0.8, 0.05, (0.95, 0.85, 0.1))):
        img[(xx - cx) ** 2 + (yy - cy) ** 2 < r ** 2] = color
    img[int(0.6 * size):int(0.75 * size), int(0.1 * size):int(0.3 * size)] = (0.2, 0.7, 0.3)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)
