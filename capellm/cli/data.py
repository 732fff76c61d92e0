"""`capellm data`: the data sets.

    capellm data synth --out DIR [options]             generate the synthetic benchmark
    capellm data check-mp100 --root DIR [--ann-dir DIR] [--json FILE] [--decode] [--strict]
                                                       which MP-100 images are present, per category
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path

USAGE = __doc__.split("\n\n")[1].replace("    capellm", "usage: capellm", 1)


def synth_main(argv=None) -> int:
    from capellm.synth import SynthConfig, generate

    p = argparse.ArgumentParser(prog="capellm data synth",
                                description="Generate the synthetic category-agnostic pose benchmark (MP-100 format).")
    p.add_argument("--out", required=True, help="output folder")
    for f in fields(SynthConfig):  # flags derived from the config, defaults from the chosen preset
        typ = str if f.name == "categories" else int
        p.add_argument("--" + f.name.replace("_", "-"), type=typ, default=None, help=f.metadata["help"])
    p.add_argument("--tiny", action="store_true", help="the unit-test preset: 7 categories, 8 images of 64 px")
    p.add_argument("--workers", type=int, default=None,
                   help="processes (default: all CPUs; one for small jobs such as --tiny)")
    p.add_argument("--force", action="store_true", help="regenerate even if the folder is complete")
    a = p.parse_args(argv)
    cats = [c.strip() for c in a.categories.split(",") if c.strip()] if a.categories else None
    try:
        s = generate(a.out, seed=a.seed if a.seed is not None else 0, images_per_category=a.images_per_category,
                     image_size=a.image_size, categories=cats, num_splits=a.num_splits, tiny=a.tiny,
                     workers=a.workers, force=a.force)
    except ValueError as e:
        print(f"capellm data synth: error: {e}", file=sys.stderr)
        return 2
    state = "already complete, reused" if s["reused"] else f"generated in {s['seconds']:.1f} s"
    print(f"{s['out_dir']}: {s['num_images']} images, {s['num_categories']} categories, "
          f"{s['num_families']} families ({state})")
    for i, sp in enumerate(s["splits"], 1):
        print(f"  split {i}: {len(sp['train'])} train / {len(sp['val'])} val / {len(sp['test'])} test categories; "
              f"novel test families: {', '.join(sp['novel_test_families'])}")
    return 0


def check_mp100_main(argv=None) -> int:
    from capellm.data.mp100 import check_mp100, format_check
    from capellm.utils import atomic_write_json

    p = argparse.ArgumentParser(prog="capellm data check-mp100",
                                description="Which MP-100 images are present, missing or unreadable, per category.")
    p.add_argument("--root", required=True, help="MP-100 folder: images in ROOT/images/<image_folder>/...")
    p.add_argument("--ann-dir", default="", help="annotation folder (default ROOT/annotations)")
    p.add_argument("--json", default="mp100_check.json", help="write the full report here ('' to skip)")
    p.add_argument("--decode", action="store_true", help="decode every image fully (slower; catches truncation)")
    p.add_argument("--workers", type=int, default=8, help="threads checking images")
    p.add_argument("--strict", action="store_true", help="exit 1 when anything is missing, unreadable or wrong")
    p.add_argument("--write-present", default="", metavar="DIR",
                   help="write each annotation file restricted to the usable images into DIR (same names), "
                        "to train and evaluate on the categories you have")
    args = p.parse_args(argv)
    ann_dir = Path(args.ann_dir) if args.ann_dir else Path(args.root) / "annotations"
    if args.write_present and Path(args.write_present).resolve() == ann_dir.resolve():
        p.error("--write-present must not be the annotation folder (it would overwrite the originals)")
    report = check_mp100(args.root, args.ann_dir or None, decode=args.decode, workers=args.workers,
                         present_dir=args.write_present or None)
    print(format_check(report))
    if args.json:
        atomic_write_json(args.json, report)
        print(f"\nfull report (with example paths) written to {args.json}")
    t = report["totals"]
    if not report["files"] or all("error" in f for f in report["files"]) or t["images"] == 0:
        return 1
    bad = t["missing"] + t["unreadable"] + t["wrong_size"] + sum(bool(r["problems"]) for r in report["categories"])
    bad += sum("error" in f for f in report["files"])
    return 1 if args.strict and bad else 0


SUBCOMMANDS = {"synth": synth_main, "check-mp100": check_mp100_main}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE + "\n\n  synth        generate the synthetic category-agnostic benchmark (MP-100 format)\n"
              "  check-mp100  per category, how many MP-100 images are present, missing or unreadable")
        return 0
    if argv[0] not in SUBCOMMANDS:
        print(f"capellm data: unknown subcommand '{argv[0]}' (known: {', '.join(SUBCOMMANDS)})", file=sys.stderr)
        return 2
    return SUBCOMMANDS[argv[0]](argv[1:])
