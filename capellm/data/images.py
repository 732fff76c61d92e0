"""Reading images, and the affine maps of pixel coordinates that every other module uses.

Coordinates follow the pixel-centre convention everywhere in capellm: pixel (column i, row j) has
its CENTRE at the continuous coordinate (i, j) and covers [i - 0.5, i + 0.5] x [j - 0.5, j + 0.5];
an image W pixels wide spans [-0.5, W - 0.5]. This is how COCO keypoints are written (pixel
indices) and what the reference box cleaning assumes (x2 = x1 + w - 1 is the last pixel index).
Every map between two pixel frames (EXIF transposes, decoder reduction, region crops, resizes,
the crop itself in capellm.data.crops) is a [2, 3] float64 affine acting on [x, y, 1], composed
with `compose` and inverted with `invert_affine`, so a point goes from any frame to any other
exactly.

Two readers:
- `load_image(path)`: the whole image, upright 8-bit RGB (training and evaluation).
- `ImageSource`: reads only a region, optionally reduced (predict, the app). JPEGs are decoded
  already reduced (libjpeg's 1/2, 1/4, 1/8 DCT scaling, PIL's `draft`) when the region is large,
  so an 8000x6000 photo never exists in memory at full resolution. Its `size` is the DISPLAYED
  size (after EXIF orientation), the frame of boxes and results.
Both give the same pixels for the same region (same EXIF handling, same mode conversions), and
raise `ImageError` naming the file for anything PIL cannot read.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from capellm.errors import CapellmError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"}

# EXIF orientation tag (0x0112) -> the transpose that makes the stored pixels upright, as ImageOps.exif_transpose
_EXIF_TRANSPOSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
                   4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
                   6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_90}


class ImageError(CapellmError):
    """An image file is missing, unreadable, corrupt or truncated; the message names the file."""


# ----------------------------------------------------------------------------------------------
# affine maps: [2, 3] float64 matrices acting on column vectors [x, y, 1]


def affine(a=1.0, b=0.0, c=0.0, d=1.0, e=0.0, f=0.0) -> np.ndarray:
    """x' = a x + b y + e, y' = c x + d y + f."""
    return np.array([[a, b, e], [c, d, f]], dtype=np.float64)


def compose(outer, inner) -> np.ndarray:
    """outer o inner for [2, 3] affines (apply `inner` first)."""
    o = np.asarray(outer, dtype=np.float64)
    i = np.asarray(inner, dtype=np.float64)
    return np.concatenate([o[:, :2] @ i[:, :2], (o[:, :2] @ i[:, 2] + o[:, 2])[:, None]], axis=1)


def invert_affine(m) -> np.ndarray:
    """Inverse of a [2, 3] affine (float64 [2, 3]); raises ValueError when it is singular."""
    m = np.asarray(m, dtype=np.float64)
    if m.shape != (2, 3):
        raise ValueError(f"expected a [2, 3] affine matrix, got shape {m.shape}")
    a, b = m[:, :2], m[:, 2]
    det = a[0, 0] * a[1, 1] - a[0, 1] * a[1, 0]
    if not math.isfinite(det) or abs(det) < 1e-12:
        raise ValueError(f"affine matrix is singular (det {det})")
    ai = np.linalg.inv(a)
    return np.concatenate([ai, (-ai @ b)[:, None]], axis=1)


def apply_affine(points, m) -> np.ndarray:
    """Map points [..., 2] through a [2, 3] affine; returns float64 [..., 2]."""
    p = np.asarray(points, dtype=np.float64)
    m = np.asarray(m, dtype=np.float64)
    if p.shape[-1] != 2:
        raise ValueError(f"points must have shape [..., 2], got {p.shape}")
    return p @ m[:, :2].T + m[:, 2]


def scale_edges(fx: float, fy: float) -> np.ndarray:
    """Resizing by (fx, fy) maps pixel edges to edges: x' + 0.5 = (x + 0.5) * fx."""
    return affine(a=fx, d=fy, e=0.5 * fx - 0.5, f=0.5 * fy - 0.5)


def transpose_matrix(method, w: int, h: int) -> np.ndarray:
    """Where PIL's `transpose(method)` of a w x h image moves a point (checked in tests)."""
    T = Image.Transpose
    return {T.FLIP_LEFT_RIGHT: affine(a=-1, e=w - 1), T.FLIP_TOP_BOTTOM: affine(d=-1, f=h - 1),
            T.ROTATE_90: affine(a=0, b=1, c=-1, d=0, f=w - 1),
            T.ROTATE_180: affine(a=-1, d=-1, e=w - 1, f=h - 1),
            T.ROTATE_270: affine(a=0, b=-1, c=1, d=0, e=h - 1), T.TRANSPOSE: affine(a=0, b=1, c=1, d=0),
            T.TRANSVERSE: affine(a=0, b=-1, c=-1, d=0, e=h - 1, f=w - 1)}[method]


def _map_rect(m: np.ndarray, x0: float, y0: float, x1: float, y1: float) -> tuple[float, float, float, float]:
    """Bounding rectangle (edges, PIL crop convention) of the rectangle (x0, y0, x1, y1) under m."""
    corners = np.array([[x0, y0], [x1, y0], [x0, y1], [x1, y1]], dtype=np.float64) - 0.5  # edges -> centre coords
    q = apply_affine(corners, m) + 0.5
    return q[:, 0].min(), q[:, 1].min(), q[:, 0].max(), q[:, 1].max()


# ----------------------------------------------------------------------------------------------
# whole images


def load_image(path) -> Image.Image:
    """Read an image file as 8-bit RGB, upright.

    - EXIF orientation is applied (phone photos are stored sideways with an orientation tag;
      annotations are made on the upright image).
    - L, 1, P, CMYK, YCbCr ... convert with PIL's standard conversions (Adobe CMYK JPEGs are
      already un-inverted by PIL's decoder).
    - 16-bit grayscale (I;16*, and I, which is how PIL opens 16-bit PNG/TIFF) is scaled from
      0..65535 to 0..255 (x / 257), not clipped: PIL's own I -> L conversion clips at 255 and
      turns most 16-bit images white.
    - Transparency (RGBA, LA, PA, P with a transparent colour) is composited over WHITE, as
      image viewers show it; dropping alpha would expose whatever colour the file keeps under
      transparent pixels (often black or garbage).
    Raises ImageError naming the file when it is missing, not an image, corrupt or truncated.
    """
    path = Path(path)
    with image_errors(path):
        with Image.open(path) as im:
            im.load()  # decode now: truncated / corrupt data fails here, not later in a worker
            im = ImageOps.exif_transpose(im)
            return to_rgb(im)


@contextlib.contextmanager
def image_errors(path):
    """Turn what PIL raises for a bad file into an ImageError naming the file."""
    try:
        yield
    except FileNotFoundError:
        raise ImageError(f"{path}: image file not found") from None
    except IsADirectoryError:
        raise ImageError(f"{path}: is a directory, not an image file") from None
    except Image.UnidentifiedImageError:
        raise ImageError(f"{path}: not a readable image (unknown or corrupt format)") from None
    except Image.DecompressionBombError as e:
        raise ImageError(f"{path}: image too large to decode safely ({e})") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        # PIL reports truncated / damaged data as OSError ("image file is truncated"),
        # SyntaxError (broken PNG chunks) or EOFError; ValueError: a mode it cannot convert
        raise ImageError(f"{path}: corrupt, truncated or unsupported image ({type(e).__name__}: {e})") from None


def to_rgb(im: Image.Image) -> Image.Image:
    """Any PIL mode as 8-bit RGB, by the rules of `load_image`."""
    mode = im.mode
    if mode == "RGB":
        return im.copy()
    if mode.startswith("I;16") or mode == "I":
        a = np.asarray(im).astype(np.float64)  # [H, W] 0..65535
        a = np.clip(np.rint(a / 257.0), 0, 255).astype(np.uint8)
        return Image.fromarray(a, mode="L").convert("RGB")
    if mode == "F":
        a = np.clip(np.rint(np.asarray(im, dtype=np.float64)), 0, 255).astype(np.uint8)
        return Image.fromarray(a, mode="L").convert("RGB")
    if mode == "P" or mode == "PA":
        im = im.convert("RGBA") if (mode == "PA" or "transparency" in im.info) else im.convert("RGB")
        mode = im.mode
        if mode == "RGB":
            return im
    elif mode == "L" and "transparency" in im.info:
        im = im.convert("LA")
        mode = "LA"
    if mode in ("RGBA", "LA", "La", "RGBa"):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return im.convert("RGB")


class ImageCache:
    """`load_image` with the most recently used decoded images kept, up to `max_mb` of pixels.

    Training visits every instance once per epoch (and an instance once per keypoint group), so
    a data set that fits (the synthetic benchmark's 4,800 training images: 236 MB) is decoded
    once instead of once per sample. `max_mb` 0 keeps nothing. Each data-loader worker holds its
    own cache.
    """

    def __init__(self, max_mb: float = 1024):
        from collections import OrderedDict

        self.max_bytes = int(max_mb * 2 ** 20)
        self.bytes = 0
        self.images: OrderedDict = OrderedDict()

    def __call__(self, path) -> Image.Image:
        key = str(path)
        if key in self.images:
            self.images.move_to_end(key)
            return self.images[key]
        image = load_image(path)
        size = image.width * image.height * 3
        if size <= self.max_bytes:
            self.images[key] = image
            self.bytes += size
            while self.bytes > self.max_bytes:
                _, old = self.images.popitem(last=False)
                self.bytes -= old.width * old.height * 3
        return image


def list_images(folder: Path) -> list[Path]:
    """The image files of a folder (not recursive), by name."""
    return sorted(p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                  and not p.name.startswith("."))


# ----------------------------------------------------------------------------------------------
# regions of images


@dataclass
class ImageSource:
    """An image file (read lazily, region by region) or an in-memory PIL image.

    `size` is the DISPLAYED size (after the EXIF orientation), the frame of boxes and results.
    """

    path: Path | None
    size: tuple[int, int]            # displayed (width, height)
    orientation: int = 1             # EXIF orientation of the stored pixels, 1 = upright
    image: Image.Image | None = None  # set for in-memory images (already upright)

    @classmethod
    def open(cls, path) -> ImageSource:
        """Read the header only (fast); a missing or unidentifiable file raises ImageError now,
        damaged pixel data when it is read."""
        path = Path(path)
        with image_errors(path), Image.open(path) as im:
            o = im.getexif().get(0x0112, 1)
            o = o if o in _EXIF_TRANSPOSE else 1
            w, h = im.size
        return cls(path, (h, w) if o >= 5 else (w, h), o)

    @classmethod
    def from_image(cls, image) -> ImageSource:
        """A PIL image or an HxW(x3) array, taken as upright."""
        if isinstance(image, np.ndarray):
            image = Image.fromarray(image)
        return cls(None, image.size, 1, image)

    @classmethod
    def of(cls, image) -> ImageSource:
        """An ImageSource for a path, a PIL image, an array, or an ImageSource (returned as is)."""
        if isinstance(image, ImageSource):
            return image
        if isinstance(image, (str, Path)):
            return cls.open(image)
        return cls.from_image(image)

    @property
    def name(self) -> str:
        return str(self.path) if self.path is not None else "<image>"

    def read(self, region=None, scale: float = 1.0) -> tuple[Image.Image, np.ndarray]:
        """RGB pixels of `region` (x0, y0, x1, y1: integer edges in displayed pixels; default the
        whole image) resized by `scale` (<= 1). Returns (image, m): m [2, 3] maps displayed pixel
        coordinates of the full image to the returned image's."""
        W, H = self.size
        x0, y0, x1, y1 = region if region is not None else (0, 0, W, H)
        x0, y0, x1, y1 = max(0, int(x0)), max(0, int(y0)), min(W, int(x1)), min(H, int(y1))
        if x1 <= x0 or y1 <= y0:
            raise ValueError(f"empty region {(x0, y0, x1, y1)} of a {W}x{H} image")
        scale = float(min(1.0, scale))
        with image_errors(self.name):
            return self._read(x0, y0, x1, y1, scale)

    def _read(self, x0, y0, x1, y1, scale):
        opened = Image.open(self.path) if self.image is None else contextlib.nullcontext(self.image)
        with opened as im:
            method = _EXIF_TRANSPOSE.get(self.orientation)
            sw, sh = im.size  # stored size
            # displayed -> stored
            m = invert_affine(transpose_matrix(method, sw, sh)) if method is not None else affine()
            k = 1
            if self.image is None and im.format == "JPEG" and scale <= 0.5:
                want = max(s for s in (1, 2, 4, 8) if s <= 1.0 / scale)
                got = im.draft(None, (sw // want, sh // want))
                if got is not None:
                    k = round(sw / got[1][2])  # draft's box is the original size over the DCT scale
            if k > 1:
                m = compose(scale_edges(1.0 / k, 1.0 / k), m)  # libjpeg: output pixel i covers [k i, k i + k)
            rx0, ry0, rx1, ry1 = _map_rect(m, x0, y0, x1, y1)
            rw, rh = im.size  # the decoded (maybe reduced) stored size
            box = (max(0, math.floor(rx0 + 1e-6)), max(0, math.floor(ry0 + 1e-6)),
                   min(rw, math.ceil(rx1 - 1e-6)), min(rh, math.ceil(ry1 - 1e-6)))
            part = im.crop(box)  # decodes (at the draft scale) and copies only the region
            part.load()
        m = compose(affine(e=-box[0], f=-box[1]), m)
        if method is not None:
            m = compose(transpose_matrix(method, part.width, part.height), m)
            part = part.transpose(method)
        # resize in the native mode where PIL filters it faithfully (16-bit stays 16-bit until
        # scaled down), else convert first (palette images would be resized by nearest neighbour)
        if part.mode not in ("RGB", "L", "I", "F") and not part.mode.startswith("I;16"):
            part = to_rgb(part)
        rest = scale * k
        if rest < 1.0:
            nw, nh = max(1, round(part.width * rest)), max(1, round(part.height * rest))
            if (nw, nh) != part.size:
                m = compose(scale_edges(nw / part.width, nh / part.height), m)
                part = part.resize((nw, nh), Image.Resampling.LANCZOS)
        if part.mode != "RGB":
            part = to_rgb(part)
        return part, m
