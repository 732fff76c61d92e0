"""`capellm category`: category files, a user's own object's keypoints.

    capellm category new NAME --keypoints "a,b,c" [--out FILE]     start a category file
    capellm category check FILE                                    validate one, flag weak descriptions
    capellm category list                                          the shipped MP-100 categories
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main(argv=None) -> int:
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

    from capellm.data.categories import (CategoryError, category_template, load_category, mp100_categories,
                                         weak_descriptions)
    from capellm.utils import atomic_write_text

    if args.cmd == "new":
        names = [k.strip() for k in args.keypoints.split(",")]
        out = Path(args.out or f"{args.name.strip().replace(' ', '_').replace('/', '_')}.yaml")
        if any(not n for n in names):
            raise CategoryError(f"{out}: --keypoints has an empty name in '{args.keypoints}'")
        if out.exists() and not args.force:
            raise CategoryError(f"{out}: file exists (use --force to overwrite)")
        atomic_write_text(out, category_template(args.name, names, source=str(out)))
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
