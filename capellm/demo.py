"""`capellm demo`: the whole method on a laptop CPU, on categories the model never saw.

1. Generate the synthetic benchmark (capellm.data.synth) unless it is already complete.
2. Train the `demo` preset on split N's TRAIN categories: the paper's code path (ViT encoder ->
   linear projector -> decoder-only LM, multi-round instructions, answer-only loss, text
   coordinates) at a size a 2-core CPU trains in minutes. No pretrained DINOv2 installs offline,
   so the small encoder is first pre-trained alone on the same categories (capellm.pretrain) and
   then frozen; projector and LM are trained in full. The LM starts from scratch, so the question
   names the keypoint without its description (docs/demo_reading.md, section 7).
3. Evaluate PCK on split N's TEST categories (unseen), with the same evaluator scoring two
   baselines that see no pixels: the box centre, and the mean position of each keypoint name over
   the training categories.
4. Write metrics.json, the checkpoint, and pictures (prediction beside ground truth).

Every stage's wall time is printed; the README quotes a real run.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from capellm.utils import atomic_write_json


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Train and evaluate CapeLLM on unseen synthetic categories (CPU).")
    p.add_argument("--data", default="data/synth", help="benchmark folder (generated if missing)")
    p.add_argument("--out", default="runs/demo", help="run folder: checkpoint, metrics, pictures")
    p.add_argument("--split", type=int, default=1, choices=range(1, 6), help="benchmark split (1-5)")
    p.add_argument("--preset", default="demo", help="model/training preset (demo; smollm2 for the real SmolLM2-135M)")
    p.add_argument("--steps", type=int, default=None, help="optimiser steps (default: the preset's)")
    p.add_argument("--pictures", type=int, default=8, help="test instances drawn to pictures/")
    p.add_argument("--resume", action="store_true", help="continue an interrupted demo run")
    p.add_argument("--seed", type=int, default=0)
    return p


def demo_config(args):
    from capellm.config import preset

    cfg = preset(args.preset)
    data = Path(args.data)
    cfg.data.train_file = str(data / "annotations" / f"synth_split{args.split}_train.json")
    cfg.data.test_file = str(data / "annotations" / f"synth_split{args.split}_test.json")
    cfg.data.image_root = str(data / "images")
    cfg.data.categories = str(data / "categories")
    cfg.train.out_dir = args.out
    cfg.train.seed = args.seed
    if args.steps:
        cfg.train.max_steps = args.steps
    return cfg


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    import torch

    from capellm.baselines import MeanPositionBaseline, centre_prediction, evaluate_baseline
    from capellm.data import synth
    from capellm.data.coco import load_keypoint_dataset
    from capellm.data.dataset import categories_for
    from capellm.evaluate import category_labels, evaluate, image_reliance
    from capellm.metrics import format_table
    from capellm.model.capellm import CapeLLM
    from capellm.train import train

    times: dict[str, float] = {}
    out = Path(args.out)

    t = time.time()
    if not synth.is_complete(args.data):
        print(f"[1/4] generating the synthetic benchmark in {args.data} ...")
        synth.generate(args.data, seed=0)
    else:
        print(f"[1/4] benchmark found in {args.data}")
        if note := synth.stale_note(args.data):
            print("      " + note)
    times["generate"] = time.time() - t

    cfg = demo_config(args)
    train_data = load_keypoint_dataset(cfg.data.train_file, cfg.data.image_root)
    test_data = load_keypoint_dataset(cfg.data.test_file, cfg.data.image_root)
    train_cats = categories_for(train_data, cfg.data.categories)
    test_cats = categories_for(test_data, cfg.data.categories)
    print(f"      split {args.split}: {len(train_cats)} train categories ({len(train_data)} instances), "
          f"{len(test_cats)} unseen test categories ({len(test_data)} instances)")

    t = time.time()
    print(f"[2/4] training preset '{args.preset}' on the train categories ...")
    torch.set_num_threads(max(1, torch.get_num_threads()))
    final = train(cfg, resume=args.resume)
    times["train"] = time.time() - t

    t = time.time()
    print("[3/4] evaluating on the unseen test categories ...")
    model = CapeLLM.from_pretrained(final)
    result = evaluate(model, test_data, test_cats, cfg.eval)
    reliance = image_reliance(model, test_data, test_cats)
    labels = category_labels(test_data, test_cats)
    mean_pos = MeanPositionBaseline(cfg.model.crop).fit(train_data.instances, train_cats)
    baselines = {
        "centre of box": evaluate_baseline(centre_prediction, test_data, test_cats, cfg.eval.thresholds, labels),
        "mean position per name": evaluate_baseline(mean_pos.predict, test_data, test_cats, cfg.eval.thresholds, labels),
    }
    times["evaluate"] = time.time() - t

    t = time.time()
    print("[4/4] drawing pictures ...")
    pictures = draw_pictures(model, test_data, test_cats, out / "pictures", args.pictures)
    times["pictures"] = time.time() - t

    summary = {"split": args.split, "preset": args.preset, "model": result, "image_reliance": reliance,
               "baselines": baselines, "seconds": {k: round(v, 1) for k, v in times.items()},
               "checkpoint": str(final), "pictures": [str(p) for p in pictures],
               "train_categories": sorted(c.name for c in train_cats.values()),
               "test_categories": sorted(c.name for c in test_cats.values()),
               "name_coverage": {c.name: mean_pos.coverage(c) for c in test_cats.values()}}
    atomic_write_json(out / "metrics.json", summary)

    print()
    print(format_table(result, cfg.eval.thresholds, title="CapeLLM demo model on unseen test categories (%)"))
    print()
    print(comparison_table(result, baselines, cfg.eval.thresholds))
    print()
    print(category_table(result, baselines))
    print()
    print(f"image reliance: answer loss {reliance['loss']:.4f} with each instance's own crop, "
          f"{reliance['loss_other_images']:.4f} with another instance's crop (gap {reliance['gap']:+.4f}; "
          f"near 0: the answers come from the text alone)")
    print()
    print("time: " + ", ".join(f"{k} {v:.0f} s" for k, v in times.items()) + f", total {sum(times.values()):.0f} s")
    print(f"metrics: {out / 'metrics.json'}   checkpoint: {final}   pictures: {out / 'pictures'}")
    return 0


def comparison_table(result: dict, baselines: dict, thresholds) -> str:
    cols = [f"PCK@{t:g}" for t in thresholds] + ["mPCK"]
    rows = [("CapeLLM (demo)", result["overall"])] + [(k, v["overall"]) for k, v in baselines.items()]
    w = max(len(r[0]) for r in rows)
    lines = [f"{'unseen categories (%)':<{w}}  " + "  ".join(f"{c:>9}" for c in cols)]
    for name, o in rows:
        lines.append(f"{name:<{w}}  " + "  ".join(f"{100 * o[c]:9.2f}" for c in cols))
    return "\n".join(lines)


def category_table(result: dict, baselines: dict, column: str = "PCK@0.2") -> str:
    """`column` per unseen category: the model beside each baseline (%)."""
    names = ["CapeLLM"] + list(baselines)
    w = max(len(c) for c in [*result["per_category"], "unseen category"])
    lines = [f"{column + ' per unseen category (%)'}",
             f"{'unseen category':<{w}}  " + "  ".join(f"{n:>{max(9, len(n))}}" for n in names)]
    for cat, v in result["per_category"].items():
        vals = [v[column]] + [b["per_category"][cat][column] for b in baselines.values()]
        lines.append(f"{cat:<{w}}  " + "  ".join(f"{100 * x:{max(9, len(n))}.2f}" for n, x in zip(names, vals)))
    return "\n".join(lines)


def draw_pictures(model, dataset, categories, folder: Path, n: int) -> list[Path]:
    """Prediction beside ground truth for the first instance of up to n test categories."""
    import numpy as np

    from capellm.data.transforms import crop_instance, load_image
    from capellm.visualize import compare

    folder.mkdir(parents=True, exist_ok=True)
    firsts = [insts[0] for insts in dataset.by_category().values() if insts][:n]
    paths = []
    for inst in firsts:
        cat = categories[inst.category_id]
        image = load_image(inst.image_path)
        crop = crop_instance(image, inst.bbox, inst.keypoints, inst.visible, model.cfg.crop)
        pred = model.predict_crops([crop], [cat])[0]
        gt = np.where(inst.visible[:, None], inst.keypoints, np.nan)   # unlabelled: not drawn
        pic = compare(image, pred.keypoints, gt, names=cat.keypoint_names, skeleton=cat.skeleton,
                      missing=pred.missing, confidence=pred.confidence)
        path = folder / f"{cat.name}_{inst.ann_id}.png"
        pic.save(path)
        paths.append(path)
    return paths


if __name__ == "__main__":
    raise SystemExit(main())
