"""`capellm predict` and `capellm category`: keypoints of a category in real images, no supports.

    capellm predict --checkpoint DIR --image IMG_OR_FOLDER --category NAME_OR_FILE
                    [--box x,y,w,h] [--out result.json] [--vis out.png]
    capellm category new NAME --keypoints "a,b,c" [--out FILE]     start a category file
    capellm category check FILE                                    validate one, flag weak descriptions
    capellm category list                                          the shipped MP-100 categories

The category is a shipped MP-100 name or id, or a user's own category file. Without a box the
whole image is the instance. Output: JSON with each keypoint's name, x and y in the image's pixels
(as displayed, i.e. after EXIF rotation) and a confidence (geometric mean of the answer's token
probabilities, `CapeLLM.predict`); keypoints whose answer did not parse have x = y = null and a
`missing` reason.

A folder is run image by image with one model: unreadable files are reported on stderr and in the
JSON's "errors" and skipped, the rest finish. Exit status: 0 when at least one image succeeded,
1 when none did, 2 for a bad command line, category or checkpoint (nothing run).

Reading images (`ImageSource`), the design choices:
- Only the region the model will see is decoded at full size: the crop square around the box plus
  a margin. JPEGs are decoded already reduced (libjpeg's 1/2, 1/4, 1/8 DCT scaling, PIL's `draft`)
  when the box is large, so an 8000x6000 photo never exists in memory at full resolution.
- When the box is much larger than the encoder input (crop side > OVERSAMPLE x input), the region is
  downscaled with an antialiasing filter first: the crop's own bilinear warp does not antialias
  (as the reference code) and would otherwise sample every n-th pixel. Smaller boxes are left alone,
  so predict sees exactly the crop that evaluation sees.
- Every step (EXIF transpose, draft reduction, region crop, resize) is an affine map of pixel
  coordinates (pixel-centre convention, data/transforms.py), composed in float64; the predicted
  keypoints go back through its inverse, so coordinates are exact in the original image.
- The box is given in the DISPLAYED orientation (what an image viewer shows), like the output.
  A box partly outside the image is clipped to it; one entirely outside, or of non-positive size,
  is a `BoxError`.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from capellm.data.transforms import ImageError, _to_rgb, apply_affine, image_errors, invert_affine

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"}
OVERSAMPLE = 2.0  # working crop keeps <= OVERSAMPLE source pixels per encoder pixel (antialiased above)
VIS_MAX_SIDE = 1600  # --vis pictures of larger images are drawn downscaled to this longer side

# EXIF orientation tag (0x0112) -> the transpose that makes the stored pixels upright, as ImageOps.exif_transpose
_EXIF_TRANSPOSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
                   4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
                   6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_90}


class BoxError(ValueError):
    """A box that does not describe a region of the image (non-positive size, entirely outside)."""


# ----------------------------------------------------------------------------------------------
# coordinates: 3x3 homogeneous affines acting on pixel-centre coordinates [x, y, 1]


def _affine(a=1.0, b=0.0, c=0.0, d=1.0, e=0.0, f=0.0) -> np.ndarray:
    """x' = a x + b y + e, y' = c x + d y + f."""
    return np.array([[a, b, e], [c, d, f], [0.0, 0.0, 1.0]], dtype=np.float64)


def _scale_edges(fx: float, fy: float) -> np.ndarray:
    """Resizing by (fx, fy) maps pixel edges to edges: x' + 0.5 = (x + 0.5) * fx."""
    return _affine(a=fx, d=fy, e=0.5 * fx - 0.5, f=0.5 * fy - 0.5)


def _transpose_matrix(method, w: int, h: int) -> np.ndarray:
    """Where PIL's `transpose(method)` of a w x h image moves a point (checked in tests)."""
    T = Image.Transpose
    return {T.FLIP_LEFT_RIGHT: _affine(a=-1, e=w - 1), T.FLIP_TOP_BOTTOM: _affine(d=-1, f=h - 1),
            T.ROTATE_90: _affine(a=0, b=1, c=-1, d=0, f=w - 1),
            T.ROTATE_180: _affine(a=-1, d=-1, e=w - 1, f=h - 1),
            T.ROTATE_270: _affine(a=0, b=-1, c=1, d=0, e=h - 1), T.TRANSPOSE: _affine(a=0, b=1, c=1, d=0),
            T.TRANSVERSE: _affine(a=0, b=-1, c=-1, d=0, e=h - 1, f=w - 1)}[method]


def _map_rect(m: np.ndarray, x0: float, y0: float, x1: float, y1: float) -> tuple[float, float, float, float]:
    """Bounding rectangle (edges, PIL crop convention) of the rectangle (x0, y0, x1, y1) under m."""
    corners = np.array([[x0, y0], [x1, y0], [x0, y1], [x1, y1]], dtype=np.float64) - 0.5  # edges -> centre coords
    q = apply_affine(corners, m[:2]) + 0.5
    return q[:, 0].min(), q[:, 1].min(), q[:, 0].max(), q[:, 1].max()


# ----------------------------------------------------------------------------------------------
# reading images


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

    @property
    def name(self) -> str:
        return str(self.path) if self.path is not None else "<image>"

    def read(self, region=None, scale: float = 1.0) -> tuple[Image.Image, np.ndarray]:
        """RGB pixels of `region` (x0, y0, x1, y1: integer edges in displayed pixels; default the
        whole image) resized by `scale` (<= 1). Returns (image, m): m [3, 3] maps displayed pixel
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
            m = np.linalg.inv(_transpose_matrix(method, sw, sh)) if method is not None else _affine()
            k = 1
            if self.image is None and im.format == "JPEG" and scale <= 0.5:
                want = max(s for s in (1, 2, 4, 8) if s <= 1.0 / scale)
                got = im.draft(None, (sw // want, sh // want))
                if got is not None:
                    k = round(sw / got[1][2])  # draft's box is the original size over the DCT scale
            if k > 1:
                m = _scale_edges(1.0 / k, 1.0 / k) @ m  # libjpeg: output pixel i covers [k i, k i + k)
            rx0, ry0, rx1, ry1 = _map_rect(m, x0, y0, x1, y1)
            rw, rh = im.size  # the decoded (maybe reduced) stored size
            box = (max(0, math.floor(rx0 + 1e-6)), max(0, math.floor(ry0 + 1e-6)),
                   min(rw, math.ceil(rx1 - 1e-6)), min(rh, math.ceil(ry1 - 1e-6)))
            part = im.crop(box)  # decodes (at the draft scale) and copies only the region
            part.load()
        m = _affine(e=-box[0], f=-box[1]) @ m
        if method is not None:
            m = _transpose_matrix(method, part.width, part.height) @ m
            part = part.transpose(method)
        # resize in the native mode where PIL filters it faithfully (16-bit stays 16-bit until
        # scaled down), else convert first (palette images would be resized by nearest neighbour)
        if part.mode not in ("RGB", "L", "I", "F") and not part.mode.startswith("I;16"):
            part = _to_rgb(part)
        rest = scale * k
        if rest < 1.0:
            nw, nh = max(1, round(part.width * rest)), max(1, round(part.height * rest))
            if (nw, nh) != part.size:
                m = _scale_edges(nw / part.width, nh / part.height) @ m
                part = part.resize((nw, nh), Image.Resampling.LANCZOS)
        if part.mode != "RGB":
            part = _to_rgb(part)
        return part, m


def load_display_image(source: ImageSource, max_side: int = VIS_MAX_SIDE) -> tuple[Image.Image, np.ndarray]:
    """The whole upright image, downscaled to `max_side` if larger; (image, [3, 3] map from pixels)."""
    return source.read(None, min(1.0, max_side / max(source.size)))


# ----------------------------------------------------------------------------------------------
# boxes and prediction


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


def predict_image(model, source, category, box=None, mode: str = "single"):
    """`model.predict` on one image, reading only what it needs; keypoints in displayed pixels.

    source: ImageSource, path, PIL image or array. Returns (Prediction, box actually used).
    """
    if not isinstance(source, ImageSource):
        source = ImageSource.open(source) if isinstance(source, (str, Path)) else ImageSource.from_image(source)
    W, H = source.size
    box = clip_box(box if box is not None else [0, 0, W, H], source.size)
    x, y, w, h = box
    crop = model.cfg.crop
    side = max(w, h) * crop.padding                      # the crop square crop_instance will take
    scale = min(1.0, OVERSAMPLE * crop.input_size / side)
    margin = 2.0 / scale + 1.0                           # resampling filters reach past the square
    cx, cy = x + w / 2, y + h / 2
    region = (math.floor(cx - side / 2 - margin), math.floor(cy - side / 2 - margin),
              math.ceil(cx + side / 2 + margin) + 1, math.ceil(cy + side / 2 + margin) + 1)
    work, m = source.read(region, scale)
    if abs(m[0, 1]) > 1e-9 or abs(m[1, 0]) > 1e-9 or m[0, 0] <= 0 or m[1, 1] <= 0:
        raise AssertionError(f"displayed -> working map is not an axis-aligned scaling: {m}")
    wx, wy = apply_affine([[x, y], [x + w, y + h]], m[:2])  # box corners, continuous coordinates
    pred = model.predict(work, category, box=[wx[0], wx[1], wy[0] - wx[0], wy[1] - wx[1]], mode=mode)
    kps = apply_affine(pred.keypoints, invert_affine(m[:2]))  # missing keypoints stay NaN
    return dataclasses.replace(pred, keypoints=kps), box


def result_dict(source: ImageSource, category, pred, box) -> dict:
    return {"image": source.name, "width": source.size[0], "height": source.size[1], "category": category.name,
            "box": [round(v, 2) for v in box], **pred.to_dict()}


def draw_result(source: ImageSource, category, pred, box=None, max_side: int = VIS_MAX_SIDE):
    """The picture --vis writes: the upright image (downscaled if large) with keypoints, skeleton
    and, when given, the box."""
    from capellm.visualize import draw_keypoints

    image, m = load_display_image(source, max_side)
    shown = apply_affine(pred.keypoints, m[:2])
    if box is not None:  # box edges scale with the picture (whole image = [0, 0, W, H])
        sx, sy = image.width / source.size[0], image.height / source.size[1]
        box = [box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy]
    return draw_keypoints(image, shown, pred.names, category.skeleton, pred.missing, pred.confidence, box=box)


def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                  and not p.name.startswith("."))


# ----------------------------------------------------------------------------------------------
# capellm predict


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


def _box_arg(text: str):
    try:
        return parse_box(text)
    except BoxError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _error(msg: str) -> None:
    print(f"capellm predict: error: {msg}", file=sys.stderr)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="capellm predict",
        description="Keypoints of a category in an image or a folder of images, without support images.",
        epilog="Exit status: 0 when at least one image succeeded (a folder's bad files are reported and "
               "skipped), 1 when none did, 2 for a bad command line, category or checkpoint.")
    p.add_argument("--checkpoint", required=True, help="model folder (train.out_dir/model)")
    p.add_argument("--image", required=True, help="an image file, or a folder of them (not recursive)")
    p.add_argument("--category", required=True, help="MP-100 name or id, or a category YAML file")
    p.add_argument("--box", type=_box_arg, default=None,
                   help="x,y,w,h in pixels of the image as displayed (default: whole image); clipped to the image")
    p.add_argument("--mode", default="single", choices=("single", "multi"),
                   help="one keypoint per prompt (single) or k per conversation (multi)")
    p.add_argument("--out", default="", help="write the result as JSON here (default: print it)")
    p.add_argument("--vis", default="",
                   help="picture of the result (PNG/JPEG); for a folder: a folder, one picture per image")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    argv = list(sys.argv[1:] if argv is None else argv)
    # "--box -10,5,40,40" would read as an option: glue a negative box to its flag
    argv = [f"--box={argv[i + 1]}" if a == "--box" and i + 1 < len(argv) and argv[i + 1][:1] == "-" else a
            for i, a in enumerate(argv) if not (i > 0 and argv[i - 1] == "--box" and a[:1] == "-")]
    args = p.parse_args(argv)

    from capellm.data.categories import resolve_category

    category = resolve_category(args.category)  # CategoryError -> exit 2 (capellm.cli)
    target = Path(args.image)
    folder = target.is_dir()
    if folder:
        paths = list_images(target)
        if not paths:
            _error(f"{target}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
            return 1
    else:
        try:
            ImageSource.open(target)  # fail before loading the model
        except ImageError as e:
            _error(str(e))
            return 2
        paths = [target]

    import torch

    from capellm.model.capellm import CapeLLM
    from capellm.utils import atomic_write_json

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = CapeLLM.from_pretrained(args.checkpoint, device=device)
    vis_dir = Path(args.vis) if (args.vis and folder) else None
    results, errors = [], []
    for path in paths:
        try:
            source = ImageSource.open(path)
            pred, box = predict_image(model, source, category, args.box, args.mode)
            results.append(result_dict(source, category, pred, box))
            if args.vis:
                vis_path = vis_dir / f"{path.stem}.png" if vis_dir else Path(args.vis)
                vis_path.parent.mkdir(parents=True, exist_ok=True)
                draw_result(source, category, pred, box).save(vis_path)
        except (ImageError, BoxError) as e:
            errors.append({"image": str(path), "error": str(e)})
            print(f"capellm predict: skipped {e}" if folder else f"capellm predict: error: {e}", file=sys.stderr)

    if folder:
        out = {"folder": str(target), "category": category.name, "results": results, "errors": errors}
        print(f"{len(results)} of {len(paths)} images done, {len(errors)} skipped", file=sys.stderr)
    elif results:
        out = results[0]
    else:
        return 2
    if args.out:
        atomic_write_json(args.out, out)
        print(f"wrote {args.out}")
    else:
        print(json.dumps(out, indent=2))
    return 0 if results else 1


# ----------------------------------------------------------------------------------------------
# capellm category

DESCRIPTION_RULES = """\
# capellm category file. Fill in each keypoint's description, then run
#   capellm category check THIS_FILE
#   capellm predict --checkpoint DIR --image IMG --category THIS_FILE
#
# The model never sees an example picture of your object: the name and the description are all it
# gets (CapeLLM, Sec. 3.2). A good description:
#   1. Locates the point ON the object: which part, and where on that part
#      (tip, base, centre, corner, where two parts join).
#   2. Relates it to its neighbours, by their names: above / below / in front of / between ...
#   3. Uses the object's OWN left and right (as the object would say them, like "the horse's
#      own left eye"), never the picture's left and right.
#   4. Avoids vague words (around, somewhere, roughly, about, near the middle, some part of):
#      say exactly where.
#   5. Is one or two sentences.
# Example (horse, "left eye"): The horse's own left eye, on the left side of the head above and
#   behind the nose and level with the right eye.
# Empty descriptions are allowed (the model then gets the names only) but predictions are better
# with them. Keypoint order matters: it is the order of the answers.
# skeleton (optional, used for drawing only): pairs of 0-based keypoint indices, e.g. [[0, 1], [1, 2]].
"""

VAGUE_WORDS = ("around", "somewhere", "roughly", "approximately", "about", "some part", "sort of", "kind of",
               "maybe", "etc", "near the middle")


def _write_template(name: str, keypoint_names: list[str], out: Path) -> None:
    import yaml

    from capellm.data.categories import Category, Keypoint
    from capellm.utils import atomic_write_text

    # validates the name and the keypoint names (non-empty, unique) with the loader's own rules
    cat = Category(name=name, keypoints=tuple(Keypoint(k) for k in keypoint_names), source=str(out))
    body = yaml.safe_dump({"name": cat.name, "keypoints": [{"name": k.name, "description": ""} for k in cat.keypoints],
                           "skeleton": []}, sort_keys=False, allow_unicode=True, width=100)
    atomic_write_text(out, DESCRIPTION_RULES + body)


def weak_descriptions(category) -> list[str]:
    """Human-readable warnings about empty or vague descriptions."""
    out = []
    for i, kp in enumerate(category.keypoints):
        d = kp.description.lower()
        if not d:
            out.append(f"keypoints[{i}] '{kp.name}': description is empty")
            continue
        words = set(d.replace(",", " ").replace(".", " ").replace(";", " ").split())
        vague = [v for v in VAGUE_WORDS if (v in words if " " not in v else v in d)]
        if vague:
            out.append(f"keypoints[{i}] '{kp.name}': vague wording {vague}")
    return out


def category_main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="capellm category", description="Category files: your own object's keypoints.")
    sub = p.add_subparsers(dest="cmd", required=True)
    new = sub.add_parser("new", help="start a category file with descriptions to fill in")
    new.add_argument("name", help="the category's name, e.g. 'teapot'")
    new.add_argument("--keypoints", required=True, help='comma-separated keypoint names, e.g. "spout tip,lid knob"')
    new.add_argument("--out", default="", help="file to write (default: NAME.yaml here)")
    new.add_argument("--force", action="store_true", help="overwrite an existing file")
    check = sub.add_parser("check", help="validate a category file and flag empty or vague descriptions")
    check.add_argument("file")
    sub.add_parser("list", help="the shipped MP-100 categories (id, name, number of keypoints)")
    args = p.parse_args(argv)

    from capellm.data.categories import CategoryError, load_category, mp100_categories

    if args.cmd == "new":
        names = [k.strip() for k in args.keypoints.split(",")]
        out = Path(args.out or f"{args.name.strip().replace(' ', '_').replace('/', '_')}.yaml")
        if any(not n for n in names):
            raise CategoryError(f"{out}: --keypoints has an empty name in '{args.keypoints}'")
        if out.exists() and not args.force:
            raise CategoryError(f"{out}: file exists (use --force to overwrite)")
        _write_template(args.name, names, out)
        print(f"wrote {out} ({len(names)} keypoints): fill in the descriptions, then `capellm category check {out}`")
        return 0
    if args.cmd == "check":
        cat = load_category(args.file)
        print(f"{args.file}: category '{cat.name}', {cat.num_keypoints} keypoints, {len(cat.skeleton)} skeleton edges")
        for w in weak_descriptions(cat):
            print(f"  warning: {w}")
        return 0
    for cid, cat in sorted(mp100_categories().items()):
        print(f"{cid:3d}  {cat.name:28s} {cat.num_keypoints:2d} keypoints  ({cat.supercategory})")
    return 0
