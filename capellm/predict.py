"""`capellm predict`: keypoints of a category in an image, from a checkpoint, without supports.

The category is a shipped MP-100 name or id, or a user's own category file. Without a box, the
whole image is the instance. Output: JSON with each keypoint's name, pixel position, confidence.
"""

from __future__ import annotations

import argparse
import json


def _parse_box(text: str):
    try:
        box = [float(v) for v in text.split(",")]
    except ValueError:
        box = []
    if len(box) != 4 or box[2] <= 0 or box[3] <= 0:
        raise argparse.ArgumentTypeError(f"--box must be x,y,w,h with w, h > 0, got '{text}'")
    return box


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Keypoints of a category in an image, without support images.")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--image", required=True)
    p.add_argument("--category", required=True, help="MP-100 name or id, or a category YAML file")
    p.add_argument("--box", type=_parse_box, default=None, help="x,y,w,h in pixels (default: whole image)")
    p.add_argument("--mode", default="single", choices=("single", "multi"))
    p.add_argument("--out", default="", help="write the result as JSON here (default: print it)")
    p.add_argument("--device", default=None)
    args = p.parse_args(argv)
    import torch

    from capellm.data.categories import resolve_category
    from capellm.model.capellm import CapeLLM
    from capellm.utils import atomic_write_json

    category = resolve_category(args.category)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = CapeLLM.from_pretrained(args.checkpoint, device=device)
    pred = model.predict(args.image, category, box=args.box, mode=args.mode)
    result = {"image": str(args.image), "category": category.name, **pred.to_dict()}
    if args.out:
        atomic_write_json(args.out, result)
        print(f"wrote {args.out}")
    else:
        print(json.dumps(result, indent=2))
    return 0


