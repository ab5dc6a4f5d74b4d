"""Real photographs as model inputs: scikit-image's bundled colour samples, or the user's --image.

Every item of a pool is a distinct view of a photograph (crop, scale, flip), chosen by a seeded
generator per item index, so `photo_pool(n)` starts with the same items as `photo_pool(m)` for m < n
and the same seed always gives the same pixels.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from infermeter.errors import BadInput

# Colour photographs shipped inside scikit-image itself (no download): name of the skimage.data loader.
BUNDLED_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "retina")


@lru_cache(maxsize=1)
def bundled_photos() -> tuple[np.ndarray, ...]:
    """The bundled colour photographs as uint8 HWC RGB arrays."""
    import skimage.data

    photos = []
    for name in BUNDLED_PHOTOS:
        try:
            img = getattr(skimage.data, name)()
        except Exception as e:  # a trimmed scikit-image install may lack a file
            raise BadInput(f"scikit-image sample photo {name!r} cannot be loaded ({type(e).__name__}: {e}); "
                           "pass --image PATH") from None
        photos.append(_as_rgb_uint8(img))
    return tuple(photos)


def load_photo(path: str | Path) -> np.ndarray:
    """One photograph from disk as a uint8 HWC RGB array; BadInput (one line) when it cannot be read."""
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    if not p.is_file():
        raise BadInput(f"--image: {str(p)!r} does not exist or is not a file")
    try:
        with Image.open(p) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise BadInput(f"--image: {str(p)!r} is not a readable image ({type(e).__name__}: {e})") from None


def _as_rgb_uint8(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img)
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    img = img[..., :3]  # drop alpha
    if img.dtype != np.uint8:
        img = np.clip(img * (255.0 if img.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(img)


def view_of(photo: np.ndarray, height: int, width: int, rng: np.random.Generator | None) -> np.ndarray:
    """A height x width uint8 view of `photo`: the centred crop with the target aspect when rng is None,
    else a random crop (40-100% of the largest such crop), position and horizontal flip."""
    from PIL import Image

    h, w = photo.shape[:2]
    aspect = width / height
    crop_h = min(h, int(round(w / aspect)))
    crop_w = min(w, int(round(crop_h * aspect)))
    flip = False
    if rng is None:
        top, left = (h - crop_h) // 2, (w - crop_w) // 2
    else:
        scale = rng.uniform(0.4, 1.0)
        crop_h, crop_w = max(1, int(crop_h * scale)), max(1, int(crop_w * scale))
        top = int(rng.integers(0, h - crop_h + 1))
        left = int(rng.integers(0, w - crop_w + 1))
        flip = bool(rng.integers(0, 2))
    crop = photo[top:top + crop_h, left:left + crop_w]
    if flip:
        crop = crop[:, ::-1]
    resized = Image.fromarray(np.ascontiguousarray(crop)).resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.uint8)


def photo_pool(n: int, height: int, width: int, seed: int = 0, image_path: str | None = None) -> np.ndarray:
    """n distinct views of real photographs, [n, height, width, 3] float32 in 0..255.

    The first pass over the photographs uses each one's centred crop; later items are seeded random
    crops, scales and flips (item i draws from a generator seeded by (seed, i))."""
    if n <= 0 or height <= 0 or width <= 0:
        raise BadInput(f"photo pool needs positive n, height and width, got n={n}, {height}x{width}")
    photos = (load_photo(image_path),) if image_path else bundled_photos()
    out = np.empty((n, height, width, 3), dtype=np.float32)
    for i in range(n):
        rng = None if i < len(photos) else np.random.default_rng([seed, i])
        out[i] = view_of(photos[i % len(photos)], height, width, rng)
    return out


#: file endings read as images from an --inputs folder
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def folder_photos(folder: str | Path) -> list[np.ndarray]:
    """Every image in `folder` (sorted by name) as uint8 HWC RGB arrays; BadInput when there are none."""
    p = Path(folder)
    if not p.is_dir():
        raise BadInput(f"--inputs {p}: this model takes a folder of images (its preprocessing is known), "
                       "not a file")
    files = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
    if not files:
        raise BadInput(f"--inputs {p}: no images ({', '.join(IMAGE_SUFFIXES)}) in the folder")
    return [_as_rgb_uint8(load_photo(f)) for f in files]
