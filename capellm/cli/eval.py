"""`capellm eval`: PCK of a checkpoint on an annotation file.

    capellm eval --checkpoint DIR --ann FILE [--image-root DIR] [--out metrics.json]
                 [--protocol instances|pairs --shots 1|5] [--eval.<field> VALUE ...]

`--ann`, `--image-root` and `--categories` are the data config's `--data.test_file`,
`--data.image_root` and `--data.categories` under shorter names. Besides the metrics JSON it
writes the predictions in the COCO keypoint results format (one file per decoding, next to the
metrics: `<metrics>_<decoding>_coco_results.json`), for pycocotools, xtcocotools or any tool.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from capellm.cli.common import add_device_argument, pick_device


def main(argv=None) -> int:
    from capellm.config import RunConfig, add_arguments, apply_arguments

    p = argparse.ArgumentParser(prog="capellm eval",
                                description="PCK of a checkpoint on an annotation file (every instance once, "
                                            "or the support-query pairs with --protocol pairs).")
    p.add_argument("--checkpoint", required=True, help="model folder (train.out_dir/model or a checkpoint)")
    p.add_argument("--ann", dest="cfg:data.test_file", default=None, metavar="FILE",
                   help="annotation JSON (MP-100 / COCO keypoints); = --data.test_file")
    p.add_argument("--image-root", dest="cfg:data.image_root", default=None, metavar="DIR",
                   help="folder the JSON's file_name is relative to; = --data.image_root")
    p.add_argument("--categories", dest="cfg:data.categories", default=None, metavar="DIR",
                   help="folder of category YAML files, or 'mp100' (default); = --data.categories")
    p.add_argument("--out", default="", help="metrics JSON (default: next to the checkpoint)")
    add_device_argument(p)
    p.add_argument("--protocol", default="instances", choices=("instances", "pairs"),
                   help="instances: every instance once (official CapeLLM); pairs: the support-query "
                        "pairs of the earlier CAPE code (200 episodes x 15 queries per category)")
    p.add_argument("--shots", type=int, default=1, help="supports per episode for --protocol pairs (1 or 5)")
    p.add_argument("--decode", dest="cfg:eval.decode", default="both", choices=("grammar", "official", "both"),
                   help="grammar: our constrained decoding; official: the authors' greedy decoding and regex "
                        "parser; both (default): each, side by side in the metrics; = --eval.decode")
    add_arguments(p, sections=("data", "eval"))
    args = p.parse_args(argv)
    if args.shots < 1:
        p.error(f"--shots must be >= 1, got {args.shots}")
    cfg = apply_arguments(RunConfig(), args)
    if not cfg.data.test_file:
        p.error("the annotation file is required (--ann FILE, or --data.test_file FILE)")

    from capellm.data.coco import load_keypoint_dataset
    from capellm.data.dataset import categories_for
    from capellm.data.mp100 import require_images
    from capellm.errors import CapellmError
    from capellm.evaluate import evaluate, evaluate_pairs, write_report
    from capellm.model.capellm import CapeLLM
    from capellm.utils import refuse_overwriting_inputs

    # everything that can be checked is checked before the model loads
    if args.out:
        inputs = [cfg.data.test_file, args.checkpoint]
        inputs += [cfg.data.categories] if cfg.data.categories != "mp100" else []
        try:
            refuse_overwriting_inputs({"--out": [args.out]}, inputs)
        except ValueError as e:
            raise CapellmError(str(e)) from None
    data = load_keypoint_dataset(cfg.data.test_file, cfg.data.image_root or None,
                                 allow_outside_root=cfg.data.allow_outside_root)
    cats = categories_for(data, cfg.data.categories, cfg.data.match_keypoint_names)
    require_images(data, "--image-root")
    device = pick_device(args.device)
    model = CapeLLM.from_pretrained(args.checkpoint, device=device, dtype=args.dtype)
    stem = Path(cfg.data.test_file).stem
    if args.protocol == "pairs":
        result = evaluate_pairs(model, data, cats, cfg.eval, shots=args.shots)
        default_out = f"metrics_{stem}_pairs_{args.shots}shot.json"
    else:
        coco: dict = {}
        result = evaluate(model, data, cats, cfg.eval, coco=coco)
        default_out = f"metrics_{stem}.json"
    out = args.out or str(Path(args.checkpoint) / default_out)
    print(write_report(result, out, cfg.eval.thresholds))
    if args.protocol != "pairs":
        from capellm.utils import atomic_write_json

        for decoding, records in coco.items():      # one COCO results file per decoding
            path = Path(out).with_name(f"{Path(out).stem}_{decoding}_coco_results.json")
            atomic_write_json(path, records)
            print(f"predictions ({decoding} decoding) in the COCO keypoint results format: {path}")
    print(f"metrics written to {out} ({result['seconds']} s, {result['unparsed_answers']} unparsed answers)")
    return 0
