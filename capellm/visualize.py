"""Pictures of keypoints: what `capellm predict --vis`, the web app and evaluation reports draw.

PIL only (no matplotlib, no OpenCV), so the app and the CLI need nothing beyond the core install.

Design choices:
- Inputs are plain arrays: points [K, 2] in the image's pixels (pixel-centre convention, as
  everywhere in capellm), NaN for a keypoint that has no position. Nothing here knows about the
  model, so ground truth, predictions and hand-made points are drawn the same way.
- Each keypoint keeps one colour (by index) in every picture, so a prediction and its ground truth
  side by side (`compare`) are matched by colour; a skeleton edge takes the colour of its first end.
- Sizes (dot radius, line width, font) follow the picture's size; a picture smaller than
  `min_side` is enlarged first (labels on a 64 px image would cover it), and the points are mapped
  with it, so callers always pass points in the ORIGINAL image's pixels.
- Missing keypoints are listed at the bottom with their reason instead of being drawn somewhere.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# distinct colours, by keypoint index (Tableau 10 then bright primaries)
PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207), (255, 255, 0), (0, 255, 255),
           (255, 0, 255), (0, 255, 0), (255, 80, 80), (80, 80, 255)]


def colour(i: int) -> tuple[int, int, int]:
    return PALETTE[i % len(PALETTE)]


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)  # scalable when Pillow has FreeType
    except (TypeError, OSError):
        return ImageFont.load_default()


def _missing_dict(missing, k: int) -> dict[int, str]:
    if missing is None:
        return {}
    if isinstance(missing, dict):
        return {int(i): str(r) for i, r in missing.items() if 0 <= int(i) < k}
    return {int(i): "" for i in missing if 0 <= int(i) < k}


def draw_keypoints(image: Image.Image, points, names=None, skeleton=(), missing=None, confidence=None,
                   box=None, min_side: int = 512, labels: bool = True, spread=None) -> Image.Image:
    """A new RGB picture of `image` with keypoints, their names and the skeleton drawn on it.

    points: [K, 2] pixels of `image` (NaN: not drawn). names: K labels (default: indices).
    skeleton: (i, j) pairs, 0-based. missing: indices, or {index: reason}, listed at the bottom.
    confidence: [K] in [0, 1], appended to the labels. box: [x, y, w, h] drawn as a thin white
    frame (the instance the model was asked about). spread: [K, 2] standard deviations of x and
    y in pixels of `image`, drawn as an ellipse of one standard deviation around each point.
    Pictures smaller than `min_side` on their longer side are enlarged (points follow), so the
    result may be larger than `image`.
    """
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    k = len(pts)
    names = [str(n) for n in names] if names is not None else [str(i) for i in range(k)]
    if len(names) != k:
        raise ValueError(f"{len(names)} names for {k} points")
    miss = _missing_dict(missing, k)
    im = image.convert("RGB") if image.mode != "RGB" else image.copy()
    f = 1.0
    if max(im.size) < min_side:
        f = min_side / max(im.size)
        im = im.resize((max(1, round(im.width * f)), max(1, round(im.height * f))), Image.Resampling.BILINEAR)
    # pixel-centre convention: edges map to edges, x' + 0.5 = (x + 0.5) * f
    fx, fy = im.width / image.width, im.height / image.height
    p = np.stack([(pts[:, 0] + 0.5) * fx - 0.5, (pts[:, 1] + 0.5) * fy - 0.5], 1)
    side = max(im.size)
    r = max(4, round(side / 90))
    lw = max(2, round(side / 300))
    font = _font(max(12, round(side / 36)))
    d = ImageDraw.Draw(im)
    ok = ~np.isnan(p).any(1)
    if box is not None:
        x, y, w, h = (float(v) for v in box)
        d.rectangle([x * fx, y * fy, (x + w) * fx - 1, (y + h) * fy - 1], outline=(255, 255, 255),
                    width=max(1, lw // 2))
    if spread is not None:
        sd = np.asarray(spread, dtype=np.float64).reshape(-1, 2) * [fx, fy]
        for i in np.flatnonzero(ok & ~np.isnan(sd).any(1)):
            (x, y), (a, b) = p[i], np.maximum(sd[i], 1.0)
            d.ellipse([x - a, y - b, x + a, y + b], outline=colour(i), width=max(1, lw // 2))
    for a, b in skeleton:
        if 0 <= a < k and 0 <= b < k and ok[a] and ok[b]:
            d.line([tuple(p[a]), tuple(p[b])], fill=colour(a), width=lw)
    for i in np.flatnonzero(ok):
        x, y = p[i]
        d.ellipse([x - r, y - r, x + r, y + r], fill=colour(i), outline=(255, 255, 255), width=max(1, lw // 2))
    if labels:
        for i in np.flatnonzero(ok):
            x, y = p[i]
            text = names[i] if confidence is None else f"{names[i]} {float(confidence[i]):.2f}"
            d.text((x + r + 2, y - r - 2), text, fill=colour(i), font=font, stroke_width=max(1, lw // 2),
                   stroke_fill=(0, 0, 0))
    if miss:
        lines = [f"missing: {names[i]}" + (f" ({why[:60]})" if why else "") for i, why in sorted(miss.items())]
        lh = font.getbbox("Ag")[3] + 4
        y = im.height - lh * len(lines) - 4
        for line in lines:
            d.text((4, y), line, fill=(255, 255, 255), font=font, stroke_width=max(1, lw // 2), stroke_fill=(0, 0, 0))
            y += lh
    return im


def save_picture(image: Image.Image, path) -> None:
    """Write a picture atomically, in the format its suffix names (.png, .jpg, ...): a killed run
    or a full disk never leaves a partial file."""
    import io
    from pathlib import Path

    from capellm.utils import atomic_write_bytes

    path = Path(path)
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"{path}: unknown picture format '{path.suffix}' (use .png or .jpg)")
    buf = io.BytesIO()
    (image.convert("RGB") if fmt == "JPEG" else image).save(buf, format=fmt)
    atomic_write_bytes(path, buf.getvalue())


def compare(image: Image.Image, pred, gt, names=None, skeleton=(), missing=None, confidence=None,
            titles=("prediction", "ground truth"), min_side: int = 512) -> Image.Image:
    """Prediction and ground truth side by side on the same image, each with a title above it.

    pred, gt: [K, 2] pixels (NaN for no position, e.g. unlabelled ground truth).
    missing / confidence belong to the prediction.
    """
    left = draw_keypoints(image, pred, names, skeleton, missing, confidence, min_side=min_side)
    right = draw_keypoints(image, gt, names, skeleton, None, None, min_side=min_side)
    font = _font(max(12, round(max(left.size) / 32)))
    band = font.getbbox("Ag")[3] + 10
    gap = max(4, left.width // 100)
    out = Image.new("RGB", (left.width + gap + right.width, band + max(left.height, right.height)), (255, 255, 255))
    out.paste(left, (0, band))
    out.paste(right, (left.width + gap, band))
    d = ImageDraw.Draw(out)
    for x0, w, title in ((0, left.width, titles[0]), (left.width + gap, right.width, titles[1])):
        tw = d.textlength(title, font=font)
        d.text((x0 + (w - tw) / 2, 4), title, fill=(0, 0, 0), font=font)
    return out
