"""Predict on real images: what `capellm predict` and the app write and draw.

The prediction itself is `CapeLLM.predict` (the one path from an image and a box to keypoints);
this module turns its result into the JSON record and the picture. Keypoints are in the pixels of
the image as displayed (after EXIF rotation); keypoints whose answer did not parse have x = y =
null and a `missing` reason.
"""

from __future__ import annotations

from PIL import Image

from capellm.data.images import ImageSource, apply_affine
from capellm.visualize import draw_keypoints

VIS_MAX_SIDE = 1600  # pictures of larger images are drawn downscaled to this longer side


def load_display_image(source: ImageSource, max_side: int = VIS_MAX_SIDE) -> tuple[Image.Image, "object"]:
    """The whole upright image, downscaled to `max_side` if larger; (image, [2, 3] map from pixels)."""
    return source.read(None, min(1.0, max_side / max(source.size)))


def result_dict(source: ImageSource, category, pred) -> dict:
    """The JSON record of one image: its name and size, the category, the box used, the keypoints."""
    return {"image": source.name, "width": source.size[0], "height": source.size[1], "category": category.name,
            "box": [round(v, 2) for v in pred.box], **pred.to_dict()}


def draw_result(source: ImageSource, category, pred, max_side: int = VIS_MAX_SIDE) -> Image.Image:
    """The picture `--vis` writes: the upright image (downscaled if large) with keypoints, skeleton
    and the box the prediction used."""
    image, m = load_display_image(source, max_side)
    shown = apply_affine(pred.keypoints, m)
    box = pred.box
    if box is not None:  # box edges scale with the picture (whole image = [0, 0, W, H])
        sx, sy = image.width / source.size[0], image.height / source.size[1]
        box = [box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy]
    spread = None
    if getattr(pred, "spread", None) is not None:   # pixels of the source -> pixels of the picture
        spread = pred.spread * [image.width / source.size[0], image.height / source.size[1]]
    return draw_keypoints(image, shown, pred.names, category.skeleton, pred.missing, pred.confidence, box=box,
                          spread=spread)
