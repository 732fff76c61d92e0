"""Top-down square crops and training augmentation, with keypoints kept consistent.

CapeLLM (Sec. 3.1, 4.1) feeds the vision encoder one query image cropped around the object's box
and asks the LLM for each keypoint as "[x,y]" NORMALISED to that crop. This module is the only
place where image pixels, crop pixels and normalised crop coordinates are related, so the model
and the evaluation never disagree about where a keypoint is.

Coordinate conventions (used by every function here and by `capellm.data.coco`):
- Pixel-centre convention: pixel (column i, row j) has its CENTRE at the continuous coordinate
  (i, j) and covers [i - 0.5, i + 0.5] x [j - 0.5, j + 0.5]; an image W pixels wide spans
  [-0.5, W - 0.5]. This is how COCO keypoints are written (pixel indices) and what the reference
  box cleaning assumes (x2 = x1 + w - 1 is the last pixel index). Coordinates are continuous:
  nothing is rounded.
- Crop pixels use the same convention: an S x S crop spans [-0.5, S - 0.5]^2, its centre is at
  ((S - 1) / 2, (S - 1) / 2).
- Normalised crop coordinates: u = (x_crop + 0.5) / S, i.e. x / S measured from the crop's
  outer edge. [0, 1]^2 is then EXACTLY the crop square (0 and 1 are its outer edges, 0.5 its
  centre) and the value does not depend on S, so the same answer text is valid at any input
  resolution. These are the numbers the LLM reads and writes.

Design choices:
- The crop is one affine map image -> crop: a square of side max(w, h) * padding * scale about
  the box centre (+ shift), rotated, resized to S. `crop_matrix` builds it in float64;
  keypoints go through the same matrix as the pixels, and `CropResult.to_image` inverts it, so
  predictions map back to image pixels exactly (PCK is computed there, README "PCK").
- Padding: 1.0 as the official CapeLLM (box at 1.0x to 224 px), 1.25 as earlier CAPE code.
- Warping uses PIL's bilinear affine transform (no anti-aliasing, like cv2.warpAffine in the
  reference code), black outside the image. PIL samples in the "edge" convention (pixel centres
  at i + 0.5), so `warp_image` shifts by half a pixel on both sides; the test suite checks that
  a bright dot lands where `apply_affine` says, with rotation and scale.
- Augmentation (training only): random scale, rotation with a probability, optional shift.
  No horizontal flips: flipping would swap the object's left/right keypoint names, and with a
  text answer per NAMED keypoint there is no flip-pair table to repair that for 100 categories.
  All random numbers come from the `rng` argument, always the same number of draws in the same
  order, so augmentation is a pure function of (seed, epoch, index).
- Keypoints that leave the crop after augmentation are kept (their normalised coordinates fall
  outside [0, 1]) but flagged in `in_crop`; the training code decides whether to ask for them.
"""

from __future__ import annotations

import contextlib

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps


class ImageError(ValueError):
    """An image file is missing, unreadable, corrupt or truncated; the message names the file."""


# ----------------------------------------------------------------------------------------------
# image loading


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
            return _to_rgb(im)


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


def _to_rgb(im: Image.Image) -> Image.Image:
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


# ----------------------------------------------------------------------------------------------
# affine maps: [2, 3] float64 matrices acting on column vectors [x, y, 1]


def crop_matrix(bbox, out_size: int, padding: float = 1.0, scale: float = 1.0, rotation: float = 0.0,
                shift=(0.0, 0.0)) -> np.ndarray:
    """Affine [2, 3] (float64) mapping IMAGE pixels -> CROP pixels (pixel-centre convention).

    bbox: [x, y, w, h] (the cleaned box). The crop is the square of side
    L = max(w, h) * padding * scale centred on the box centre c = (x + w/2, y + h/2) plus
    shift * L (shift in image axes, as a fraction of the side), rotated by `rotation` degrees
    about that centre, and resized to out_size x out_size. The square's outer edges land on the
    crop's outer edges (-0.5 and S - 0.5), its centre on the crop centre ((S-1)/2, (S-1)/2).

    Rotation: positive `rotation` turns the IMAGE CONTENT counter-clockwise as seen on screen in
    the crop (like PIL's Image.rotate); i.e. the crop window is turned clockwise in the image.
    """
    x, y, w, h = (float(v) for v in np.asarray(bbox, dtype=np.float64).reshape(4))
    if not (isinstance(out_size, (int, np.integer)) and out_size > 0):
        raise ValueError(f"out_size must be a positive integer, got {out_size!r}")
    side = max(w, h) * float(padding) * float(scale)
    if not (math.isfinite(side) and side > 0):
        raise ValueError(f"crop side max(w, h) * padding * scale must be positive and finite, got "
                         f"{side} (bbox {[x, y, w, h]}, padding {padding}, scale {scale})")
    sx, sy = (float(v) for v in shift)
    cx = x + 0.5 * w + sx * side
    cy = y + 0.5 * h + sy * side
    k = out_size / side  # crop pixels per image pixel
    t = math.radians(float(rotation))
    cos, sin = math.cos(t), math.sin(t)
    # y points down, so the counter-clockwise-on-screen rotation of (dx, dy) is
    # (cos dx + sin dy, -sin dx + cos dy): (1, 0) "right" goes to (0, -1) "up" at 90 degrees
    a = k * np.array([[cos, sin], [-sin, cos]])
    centre_out = (out_size - 1) / 2.0
    b = np.array([centre_out, centre_out]) - a @ np.array([cx, cy])
    return np.concatenate([a, b[:, None]], axis=1)


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


def warp_image(image: Image.Image, m, out_size: int) -> Image.Image:
    """Resample `image` through the image -> crop affine `m` into an out_size^2 crop.

    Bilinear, black outside the image. PIL's transform wants the inverse map (output -> input)
    in its edge convention (pixel centres at i + 0.5), so we conjugate by a half-pixel shift:
    p_edge = Minv (q_edge - 0.5) + 0.5.
    """
    mi = invert_affine(m)
    a, b = mi[:, :2], mi[:, 2]
    b_edge = b + 0.5 - a @ np.array([0.5, 0.5])
    data = (a[0, 0], a[0, 1], b_edge[0], a[1, 0], a[1, 1], b_edge[1])
    return image.transform((int(out_size), int(out_size)), Image.Transform.AFFINE, data,
                           resample=Image.Resampling.BILINEAR, fillcolor=0)


def _normaliser(out_size: int) -> np.ndarray:
    """[2, 3] crop pixels -> normalised crop coordinates, u = (x + 0.5) / S."""
    s = float(out_size)
    return np.array([[1.0 / s, 0.0, 0.5 / s], [0.0, 1.0 / s, 0.5 / s]])


def _compose(outer, inner) -> np.ndarray:
    """outer o inner for [2, 3] affines (apply `inner` first)."""
    o = np.asarray(outer, dtype=np.float64)
    i = np.asarray(inner, dtype=np.float64)
    return np.concatenate([o[:, :2] @ i[:, :2], (o[:, :2] @ i[:, 2] + o[:, 2])[:, None]], axis=1)


# ----------------------------------------------------------------------------------------------
# config and the crop itself


def _pair(v, name: str) -> tuple[float, float]:
    try:
        t = tuple(float(x) for x in v)
    except TypeError:
        raise ValueError(f"CropConfig.{name} must be a pair of numbers, got {v!r}") from None
    if len(t) != 2:
        raise ValueError(f"CropConfig.{name} must have 2 values, got {len(t)}")
    return t  # type: ignore[return-value]


@dataclass
class CropConfig:
    """How a box becomes the encoder's input square, and how training perturbs it."""

    input_size: int = 224  # encoder input side in pixels (CapeLLM: 224; must suit the encoder's patch)
    padding: float = 1.0  # box enlargement: 1.0 as the official CapeLLM, 1.25 as earlier CAPE code
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)  # ImageNet normalisation (DINOv2)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    augment: bool = False  # training augmentation on/off (off: the deterministic eval crop)
    scale_range: tuple[float, float] = (0.75, 1.25)  # crop side multiplier, uniform; >1 zooms out
    max_rotation: float = 30.0  # degrees; rotation uniform in [-r, r] ...
    rotation_prob: float = 0.6  # ... applied with this probability (as mmpose's 0.6)
    max_shift: float = 0.0  # centre shift per axis, uniform in [-s, s], fraction of the crop side

    def __post_init__(self):
        if isinstance(self.input_size, bool) or not isinstance(self.input_size, (int, np.integer)) \
                or self.input_size <= 0:
            raise ValueError(f"CropConfig.input_size must be a positive integer, got {self.input_size!r}")
        self.input_size = int(self.input_size)
        self.padding = float(self.padding)
        if not (math.isfinite(self.padding) and self.padding > 0):
            raise ValueError(f"CropConfig.padding must be > 0, got {self.padding}")
        for name in ("mean", "std"):
            v = getattr(self, name)
            try:
                t = tuple(float(x) for x in v)
            except TypeError:
                raise ValueError(f"CropConfig.{name} must be 3 numbers (R, G, B), got {v!r}") from None
            if len(t) != 3:
                raise ValueError(f"CropConfig.{name} must be 3 numbers (R, G, B), got {len(t)}")
            setattr(self, name, t)  # YAML gives lists; keep tuples so configs hash and compare
        if not all(s > 0 for s in self.std):
            raise ValueError(f"CropConfig.std must be positive, got {self.std}")
        if not isinstance(self.augment, bool):
            raise ValueError(f"CropConfig.augment must be true or false, got {self.augment!r}")
        self.scale_range = _pair(self.scale_range, "scale_range")
        lo, hi = self.scale_range
        if not (0 < lo <= hi and math.isfinite(hi)):
            raise ValueError(f"CropConfig.scale_range must satisfy 0 < low <= high, got {self.scale_range}")
        self.max_rotation = float(self.max_rotation)
        if not (0 <= self.max_rotation <= 180):
            raise ValueError(f"CropConfig.max_rotation must be in [0, 180] degrees, got {self.max_rotation}")
        self.rotation_prob = float(self.rotation_prob)
        if not (0 <= self.rotation_prob <= 1):
            raise ValueError(f"CropConfig.rotation_prob must be in [0, 1], got {self.rotation_prob}")
        self.max_shift = float(self.max_shift)
        if not (0 <= self.max_shift <= 1):
            raise ValueError(f"CropConfig.max_shift must be in [0, 1] (fraction of the side), got {self.max_shift}")


@dataclass
class CropResult:
    """One encoder-ready crop and where the keypoints are in it."""

    pixel_values: torch.Tensor  # float32 [3, S, S], normalised with cfg.mean / cfg.std
    keypoints: np.ndarray  # float32 [K, 2] normalised crop coordinates (in [0, 1] inside the crop)
    in_crop: np.ndarray  # bool [K]: labelled AND inside [0, 1]^2
    matrix: np.ndarray  # float64 [2, 3] image pixels -> normalised crop coordinates

    def to_image(self, points_norm) -> np.ndarray:
        """Normalised crop coordinates [K, 2] -> image pixels (float64 [K, 2]); for predictions."""
        return apply_affine(points_norm, invert_affine(self.matrix))


def crop_to_unit(bbox, cfg: CropConfig) -> np.ndarray:
    """[2, 3] image pixels -> normalised coordinates of the un-augmented crop (no image needed)."""
    return _compose(_normaliser(cfg.input_size), crop_matrix(bbox, cfg.input_size, cfg.padding))


def crop_instance(image: Image.Image, bbox, keypoints, visible, cfg: CropConfig,
                  rng: np.random.Generator | None = None) -> CropResult:
    """Crop one instance for the encoder; keypoints follow the pixels through the same matrix.

    image: PIL image (converted to RGB if needed). bbox: cleaned [x, y, w, h].
    keypoints: [K, 2] image pixels. visible: [K] labelled mask (bool, or v values).
    Augmentation only when cfg.augment is True AND rng is given. It always draws, in this
    order: scale, rotation coin, rotation angle, shift x, shift y (five draws, whatever the
    settings), so a change of probability does not re-deal the other parameters.
    """
    kps = np.asarray(keypoints, dtype=np.float64)
    vis = np.asarray(visible).astype(bool)
    if kps.ndim != 2 or kps.shape[1] != 2:
        raise ValueError(f"keypoints must have shape [K, 2], got {kps.shape}")
    if vis.shape != (kps.shape[0],):
        raise ValueError(f"visible must have shape [{kps.shape[0]}], got {vis.shape}")

    scale, rotation, shift = 1.0, 0.0, (0.0, 0.0)
    if cfg.augment and rng is not None:
        lo, hi = cfg.scale_range
        scale = float(rng.uniform(lo, hi))
        rotate = bool(rng.random() < cfg.rotation_prob)
        angle = float(rng.uniform(-cfg.max_rotation, cfg.max_rotation))
        rotation = angle if rotate else 0.0
        shift = tuple(float(v) for v in rng.uniform(-cfg.max_shift, cfg.max_shift, size=2))

    s = cfg.input_size
    m_px = crop_matrix(bbox, s, cfg.padding, scale, rotation, shift)  # image px -> crop px
    if image.mode != "RGB":
        image = _to_rgb(image)
    crop = warp_image(image, m_px, s)
    m_norm = _compose(_normaliser(s), m_px)  # image px -> normalised crop coords
    kn = apply_affine(kps, m_norm)  # [K, 2]
    inside = np.all((kn >= 0.0) & (kn <= 1.0), axis=1)
    return CropResult(pixel_values=image_to_tensor(crop, cfg), keypoints=kn.astype(np.float32),
                      in_crop=vis & inside, matrix=m_norm)


def image_to_tensor(image: Image.Image, cfg: CropConfig) -> torch.Tensor:
    """An already-cropped image -> float32 [3, S, S], normalised with cfg.mean / cfg.std.

    An image that is not S x S is resized (bilinear, aspect NOT kept); normalised crop
    coordinates are unchanged by that resize, by construction.
    """
    if image.mode != "RGB":
        image = _to_rgb(image)
    s = cfg.input_size
    if image.size != (s, s):
        image = image.resize((s, s), Image.Resampling.BILINEAR)
    a = np.asarray(image, dtype=np.float32) / 255.0  # [S, S, 3]
    t = torch.from_numpy(a).permute(2, 0, 1)  # [3, S, S]
    mean = torch.tensor(cfg.mean, dtype=torch.float32)[:, None, None]
    std = torch.tensor(cfg.std, dtype=torch.float32)[:, None, None]
    return ((t - mean) / std).contiguous()
