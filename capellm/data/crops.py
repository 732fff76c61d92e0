"""Top-down square crops, training augmentation and boxes, with keypoints kept consistent.

CapeLLM (Sec. 3.1, 4.1) feeds the vision encoder one query image cropped around the object's box
and asks the LLM for each keypoint as "[x,y]" NORMALISED to that crop. This module is the only
place where image pixels, crop pixels and normalised crop coordinates are related, so the model
and the evaluation never disagree about where a keypoint is.

Coordinate conventions (used by every function here and by `capellm.data.coco`):
- Image pixels: the pixel-centre convention of capellm.data.images. Coordinates are continuous:
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
- Augmentation (training only): random scale (uniform, or normal and clipped as the authors'
  recipe), rotation with a probability, optional shift.
  No horizontal flips: flipping would swap the object's left/right keypoint names, and with a
  text answer per NAMED keypoint there is no flip-pair table to repair that for 100 categories.
  All random numbers come from the `rng` argument, always the same number of draws in the same
  order, so augmentation is a pure function of (seed, epoch, index).
- Predict on a user's image (`read_crop`): only the region the crop covers is decoded, and a box
  much larger than the encoder input (crop side > OVERSAMPLE x input) is first downscaled with an
  antialiasing filter: the crop's own bilinear warp does not antialias (as the reference code)
  and would otherwise sample every n-th pixel. Smaller boxes are left alone, so predict sees
  exactly the crop that evaluation sees. The crop's matrix then maps DISPLAYED image pixels to
  the crop, through every step of the reading, so predictions come back in the image's frame.
- Keypoints that leave the crop after augmentation are kept (their normalised coordinates fall
  outside [0, 1]) but flagged in `in_crop`; the training code decides whether to ask for them.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import torch
from PIL import Image

from capellm.config import CropConfig
from capellm.data.images import (
    ImageSource,
    apply_affine,
    compose,
    invert_affine,
    to_rgb,
)
from capellm.errors import CapellmError

OVERSAMPLE = 2.0  # read_crop keeps <= OVERSAMPLE source pixels per encoder pixel (antialiased above)


class BoxError(CapellmError):
    """A box that does not describe a region of the image (non-positive size, entirely outside)."""


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


@dataclass
class CropResult:
    """One encoder-ready crop and where the keypoints are in it."""

    pixel_values: torch.Tensor  # float32 [3, S, S] normalised (cfg.mean, cfg.std); pixels=False: uint8 [S, S, 3]
    keypoints: np.ndarray  # float32 [K, 2] normalised crop coordinates (in [0, 1] inside the crop)
    in_crop: np.ndarray  # bool [K]: labelled AND inside [0, 1]^2
    matrix: np.ndarray  # float64 [2, 3] image pixels -> normalised crop coordinates
    warped_from: tuple[int, int] = (0, 0)  # size of the image the crop was sampled from

    def to_image(self, points_norm) -> np.ndarray:
        """Normalised crop coordinates [K, 2] -> image pixels (float64 [K, 2]); for predictions."""
        return apply_affine(points_norm, invert_affine(self.matrix))


def crop_to_unit(bbox, cfg: CropConfig) -> np.ndarray:
    """[2, 3] image pixels -> normalised coordinates of the un-augmented crop (no image needed)."""
    return compose(_normaliser(cfg.input_size), crop_matrix(bbox, cfg.input_size, cfg.padding))


def crop_instance(image: Image.Image, bbox, keypoints, visible, cfg: CropConfig,
                  rng: np.random.Generator | None = None, pixels: bool = True) -> CropResult:
    """Crop one instance for the encoder; keypoints follow the pixels through the same matrix.

    image: PIL image (converted to RGB if needed). bbox: cleaned [x, y, w, h].
    keypoints: [K, 2] image pixels. visible: [K] labelled mask (bool, or v values).
    Augmentation only when cfg.augment is True AND rng is given. It always draws, in this
    order: scale, rotation coin, rotation angle, shift x, shift y (five draws, whatever the
    settings), so a change of probability does not re-deal the other parameters.
    `pixels` False: pixel_values is the crop's uint8 [S, S, 3] array, not yet normalised
    (`normalise_pixels` makes the encoder input of a batch of them).
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
        if cfg.scale_distribution == "normal":   # N(1, std) clipped, by inverse CDF: still one draw
            u = min(max(float(rng.random()), 1e-12), 1 - 1e-12)
            scale = min(max(1.0 + cfg.scale_std * NormalDist().inv_cdf(u), lo), hi)
        else:
            scale = float(rng.uniform(lo, hi))
        rotate = bool(rng.random() < cfg.rotation_prob)
        angle = float(rng.uniform(-cfg.max_rotation, cfg.max_rotation))
        rotation = angle if rotate else 0.0
        shift = tuple(float(v) for v in rng.uniform(-cfg.max_shift, cfg.max_shift, size=2))

    s = cfg.input_size
    m_px = crop_matrix(bbox, s, cfg.padding, scale, rotation, shift)  # image px -> crop px
    if image.mode != "RGB":
        image = to_rgb(image)
    crop = warp_image(image, m_px, s)
    m_norm = compose(_normaliser(s), m_px)  # image px -> normalised crop coords
    kn = apply_affine(kps, m_norm)  # [K, 2]
    inside = np.all((kn >= 0.0) & (kn <= 1.0), axis=1)
    return CropResult(pixel_values=image_to_tensor(crop, cfg) if pixels else np.asarray(crop),
                      keypoints=kn.astype(np.float32),
                      in_crop=vis & inside, matrix=m_norm,
                      warped_from=image.size)


def image_to_tensor(image: Image.Image, cfg: CropConfig) -> torch.Tensor:
    """An already-cropped image -> float32 [3, S, S], normalised with cfg.mean / cfg.std.

    An image that is not S x S is resized (bilinear, aspect NOT kept); normalised crop
    coordinates are unchanged by that resize, by construction.
    """
    if image.mode != "RGB":
        image = to_rgb(image)
    s = cfg.input_size
    if image.size != (s, s):
        image = image.resize((s, s), Image.Resampling.BILINEAR)
    return normalise_pixels(torch.from_numpy(np.array(image))[None], cfg)[0]


def normalise_pixels(pixels: torch.Tensor, cfg: CropConfig) -> torch.Tensor:
    """uint8 crops [B, S, S, 3] -> float32 [B, 3, S, S], normalised with cfg.mean / cfg.std."""
    t = pixels.permute(0, 3, 1, 2).to(torch.float32, memory_format=torch.contiguous_format)
    mean, std = _mean_std(tuple(cfg.mean), tuple(cfg.std))
    return t.div_(255.0).sub_(mean).div_(std)


@functools.lru_cache(maxsize=8)
def _mean_std(mean: tuple, std: tuple) -> tuple[torch.Tensor, torch.Tensor]:
    """The normalisation constants as [3, 1, 1] float32 tensors (built once per setting)."""
    return (torch.tensor(mean, dtype=torch.float32)[:, None, None],
            torch.tensor(std, dtype=torch.float32)[:, None, None])


# ----------------------------------------------------------------------------------------------
# boxes, and the crop of a box in a user's image


def parse_box(text: str | None) -> list[float] | None:
    """'x,y,w,h' (commas and/or spaces) -> [x, y, w, h]; None when empty. BoxError unless 4
    finite numbers with w, h > 0 (whether it meets the image is `clip_box`'s question)."""
    text = (text or "").strip()
    if not text:
        return None
    try:
        box = [float(v) for v in text.replace(",", " ").split()]
    except ValueError:
        box = []
    if len(box) != 4 or not all(math.isfinite(v) for v in box) or box[2] <= 0 or box[3] <= 0:
        raise BoxError(f"box must be x,y,w,h in pixels with w, h > 0, got '{text}'")
    return box


def clip_box(box, size) -> list[float]:
    """[x, y, w, h] clipped to a `size` = (W, H) image (whose box is [0, 0, W, H])."""
    W, H = size
    try:
        x, y, w, h = (float(v) for v in box)
    except (TypeError, ValueError):
        raise BoxError(f"a box is 4 numbers x,y,w,h, got {box!r}") from None
    if not all(math.isfinite(v) for v in (x, y, w, h)) or w <= 0 or h <= 0:
        raise BoxError(f"box {[x, y, w, h]} must have finite values and a positive width and height")
    cx0, cy0, cx1, cy1 = max(0.0, x), max(0.0, y), min(float(W), x + w), min(float(H), y + h)
    if cx1 <= cx0 or cy1 <= cy0:
        raise BoxError(f"box {[x, y, w, h]} (x,y,w,h) lies entirely outside the {W}x{H} image")
    return [cx0, cy0, cx1 - cx0, cy1 - cy0]


def read_crop(source: ImageSource, box, cfg: CropConfig, num_keypoints: int = 0) -> CropResult:
    """The un-augmented crop of `box` ([x, y, w, h], displayed pixels, inside the image: see
    `clip_box`) read from `source`, decoding only the region it covers and downscaling large
    boxes with antialiasing first (module docstring). The result's matrix maps DISPLAYED pixels
    to normalised crop coordinates; its keypoints are empty placeholders for `num_keypoints`."""
    x, y, w, h = (float(v) for v in box)
    side = max(w, h) * cfg.padding                       # the crop square crop_instance will take
    scale = min(1.0, OVERSAMPLE * cfg.input_size / side)
    margin = 2.0 / scale + 1.0                           # resampling filters reach past the square
    cx, cy = x + w / 2, y + h / 2
    region = (math.floor(cx - side / 2 - margin), math.floor(cy - side / 2 - margin),
              math.ceil(cx + side / 2 + margin) + 1, math.ceil(cy + side / 2 + margin) + 1)
    work, m = source.read(region, scale)                 # m: displayed -> working pixels
    if abs(m[0, 1]) > 1e-9 or abs(m[1, 0]) > 1e-9 or m[0, 0] <= 0 or m[1, 1] <= 0:
        raise AssertionError(f"displayed -> working map is not an axis-aligned scaling: {m}")
    (wx0, wy0), (wx1, wy1) = apply_affine([[x, y], [x + w, y + h]], m)  # box corners, continuous
    k = num_keypoints
    crop = crop_instance(work, [wx0, wy0, wx1 - wx0, wy1 - wy0], np.zeros((k, 2)), np.zeros(k, bool), cfg)
    crop.matrix = compose(crop.matrix, m)
    return crop
