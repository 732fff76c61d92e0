"""`capellm predict`: keypoints of a category in real images, no supports.

    capellm predict --checkpoint DIR --image IMG_OR_FOLDER --category NAME_OR_FILE
                    [--box x,y,w,h] [--out result.json] [--vis out.png]

The category is a shipped MP-100 name or id, or a user's own category file. Without a box the
whole image is the instance. Output: JSON with each keypoint's name, x and y in the image's pixels
(as displayed, i.e. after EXIF rotation) and a confidence (geometric mean of the answer's token
probabilities, `CapeLLM.predict`); keypoints whose answer did not parse have x = y = null and a
`missing` reason.

A folder is run image by image with one model: unreadable files are reported on stderr and in the
JSON's "errors" and skipped, the rest finish. Exit status: 0 when at least one image succeeded;
1 when a folder's images all failed; 2 for a bad command line, box, category or checkpoint, a
single image that cannot be read, or an output path that is one of the inputs (nothing written).
Pictures and JSON are written atomically; --out and --vis never overwrite an input.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from capellm.cli.common import add_device_argument, error, pick_device

PROG = "capellm predict"


def _box_arg(text: str):
    from capellm.data.crops import BoxError, parse_box

    try:
        return parse_box(text)
    except BoxError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Keypoints of a category in an image or a folder of images, without support images.",
        epilog="Exit status: 0 when at least one image succeeded (a folder's bad files are reported and "
               "skipped); 1 when a folder's images all failed; 2 for a bad command line, box, category or "
               "checkpoint, a single image that cannot be read, or an output that would overwrite an input.")
    p.add_argument("--checkpoint", required=True, help="model folder (train.out_dir/model)")
    p.add_argument("--image", required=True, help="an image file, or a folder of them (not recursive)")
    p.add_argument("--category", required=True, help="MP-100 name or id, or a category YAML file")
    p.add_argument("--box", type=_box_arg, default=None,
                   help="x,y,w,h in pixels of the image as displayed (default: whole image); clipped to the image")
    p.add_argument("--mode", default="single", choices=("single", "multi"),
                   help="one keypoint per prompt (single) or k per conversation (multi)")
    p.add_argument("--spread", action="store_true",
                   help="also each keypoint's uncertainty: the spread (standard deviation, pixels), expected "
                        "and most probable position of its answer's distribution; --vis draws the spread")
    p.add_argument("--out", default="", help="write the result as JSON here (default: print it)")
    p.add_argument("--vis", default="",
                   help="picture of the result (PNG/JPEG); for a folder: a folder, one picture per image")
    add_device_argument(p)
    argv = list(sys.argv[1:] if argv is None else argv)
    # "--box -10,5,40,40" would read as an option: glue a negative box to its flag
    argv = [f"--box={argv[i + 1]}" if a == "--box" and i + 1 < len(argv) and argv[i + 1][:1] == "-" else a
            for i, a in enumerate(argv) if not (i > 0 and argv[i - 1] == "--box" and a[:1] == "-")]
    args = p.parse_args(argv)

    from capellm.data.categories import resolve_category
    from capellm.data.crops import BoxError
    from capellm.data.images import IMAGE_SUFFIXES, ImageError, ImageSource, list_images

    category = resolve_category(args.category)  # CategoryError -> exit 2 (capellm.cli)
    target = Path(args.image)
    folder = target.is_dir()
    if folder:
        paths = list_images(target)
        if not paths:
            error(PROG, f"{target}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
            return 1
    else:
        try:
            ImageSource.open(target)  # fail before loading the model
        except ImageError as e:
            error(PROG, str(e))
            return 2
        paths = [target]

    from capellm.model.capellm import CapeLLM
    from capellm.predict import draw_result, result_dict
    from capellm.utils import atomic_write_json, refuse_overwriting_inputs
    from capellm.visualize import save_picture

    vis_dir = Path(args.vis) if (args.vis and folder) else None
    if vis_dir is not None and vis_dir.resolve() == target.resolve():
        error(PROG, f"--vis {vis_dir}: is the image folder; its pictures would be read as inputs next time "
                    f"(choose another folder)")
        return 2
    stems: dict[str, int] = {}
    for path in paths:
        stems[path.stem] = stems.get(path.stem, 0) + 1
    vis_of = {path: (vis_dir / (f"{path.stem}.png" if stems[path.stem] == 1 else f"{path.name}.png") if vis_dir
                     else Path(args.vis)) for path in paths} if args.vis else {}
    outputs = {"--out": [Path(args.out)] if args.out else [], "--vis": list(vis_of.values())}
    try:
        refuse_overwriting_inputs(outputs, inputs=[*paths, Path(args.category), Path(args.checkpoint)])
    except ValueError as e:
        error(PROG, str(e))
        return 2

    model = CapeLLM.from_pretrained(args.checkpoint, device=pick_device(args.device), dtype=args.dtype)
    if args.spread and model.keypoint_head is not None:
        print(f"{PROG}: note: --spread: {args.checkpoint} answers with <KEYPOINT> tokens, whose decoder gives a "
              f"position and no distribution", file=sys.stderr)
    results, errors = [], []
    for path in paths:
        try:
            source = ImageSource.open(path)
            pred = model.predict(source, category, args.box, args.mode, distribution=args.spread)
            results.append(result_dict(source, category, pred))
            if args.vis:
                save_picture(draw_result(source, category, pred), vis_of[path])
        except (ImageError, BoxError) as e:
            errors.append({"image": str(path), "error": str(e)})
            print(f"{PROG}: skipped {e}" if folder else f"{PROG}: error: {e}", file=sys.stderr)

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
        print(json.dumps(out, indent=2, allow_nan=False))
    return 0 if results else 1
