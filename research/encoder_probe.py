"""How well does the pre-trained encoder alone locate keypoints on unseen categories?

Pre-trains the demo's encoder (`capellm.pretrain.pretrain_encoder`, target "names") on split N's
training categories, then predicts each keypoint of the unseen test categories from the
pre-training head alone: the patch with the highest logit for the keypoint's name, plus the head's
offset inside it. Keypoints whose name no training category has fall back to the mean-position
baseline's answer (that is all a name-indexed head can do). Scored with the evaluator's PCK
(capellm.metrics) beside the mean-position baseline, per category.

This bounds what the LLM can read from the frozen encoder in the demo: if the probe does not beat
the baseline, no LLM on top will; if it does and the CapeLLM does not, the LLM's reading is what
fails (research/demo_reading.md).

    python research/encoder_probe.py --steps 600
    python research/encoder_probe.py --steps 600 --set model.vision.random_config.patch_size=8
    python research/encoder_probe.py --steps 600 --pool 4      # crops drawn from the demo's pool
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch


@torch.no_grad()
def probe_predictions(vision, head, dataset, categories, classes: dict[str, int], fallback, crop_cfg,
                      batch_size: int = 64) -> list[np.ndarray]:
    """[K, 2] image-pixel predictions per instance (see the module docstring)."""
    from capellm.data.categories import name_key
    from capellm.data.crops import crop_instance
    from capellm.data.images import apply_affine, invert_affine, load_image

    vision.eval()
    side = crop_cfg.input_size // vision.patch_size
    preds = []
    for start in range(0, len(dataset.instances), batch_size):
        batch = dataset.instances[start:start + batch_size]
        crops = [crop_instance(load_image(x.image_path), x.bbox, x.keypoints, x.visible, crop_cfg) for x in batch]
        tokens = vision(torch.stack([c.pixel_values for c in crops]))             # [B, N, D]
        out = head(tokens).view(len(batch), tokens.shape[1], -1, 3)              # [B, N, C, 3]
        for b, (inst, crop) in enumerate(zip(batch, crops)):
            cat = categories[inst.category_id]
            pred = fallback(inst, cat).astype(np.float64)                        # image pixels
            known = [(k, classes[name_key(kp.name)]) for k, kp in enumerate(cat.keypoints)
                     if name_key(kp.name) in classes]
            if known:
                ks, cs = map(list, zip(*known))
                idx = out[b, :, cs, 0].argmax(0)                                 # [J] best patch per class
                offset = out[b, idx, cs, 1:].numpy()                             # [J, 2]
                cells = np.stack([idx.numpy() % side, idx.numpy() // side], 1)   # (column, row)
                unit = (cells + 0.5 + offset) / side
                pred[ks] = apply_affine(unit, invert_affine(crop.matrix))
            preds.append(pred)
    return preds


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Locate unseen categories' keypoints with the pre-trained encoder alone.")
    p.add_argument("--data", default="data/synth")
    p.add_argument("--split", type=int, default=1, choices=range(1, 6))
    p.add_argument("--preset", default="demo")
    p.add_argument("--steps", type=int, default=None, help="pre-training steps (default: the preset's)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="dotted config overrides")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pool", type=int, default=0,
                   help="draw pre-training crops from a pool of N augmented crops per instance (as the demo)")
    args = p.parse_args(argv)

    from capellm.baselines import MeanPositionBaseline, evaluate_baseline
    from capellm.config import merge, parse_overrides
    from capellm import synth
    from capellm.data.categories import name_key
    from capellm.data.coco import load_keypoint_dataset
    from capellm.data.dataset import categories_for, make_crops
    from capellm.data.images import ImageCache
    from capellm.demo import demo_config
    from capellm.evaluate import category_labels
    from capellm.metrics import PCKAccumulator
    from capellm.model.vision import VisionEncoder, build_vision_backbone
    from capellm.pretrain import keypoint_classes, pretrain_encoder

    if not synth.is_complete(args.data):
        synth.generate(args.data, seed=0)
    cfg = demo_config(args.data, "unused", args.split, args.preset, seed=args.seed)
    cfg = merge(cfg, parse_overrides(args.set, where="--set "))
    steps = args.steps or cfg.train.encoder_pretrain.steps
    train = load_keypoint_dataset(cfg.data.train_file, cfg.data.image_root)
    test = load_keypoint_dataset(cfg.data.test_file, cfg.data.image_root)
    train_cats = categories_for(train, cfg.data.categories)
    test_cats = categories_for(test, cfg.data.categories)

    torch.manual_seed(args.seed)
    vision = VisionEncoder(build_vision_backbone(cfg.model.vision))
    t0 = time.time()
    pool = make_crops(train.instances, cfg.model.crop, args.pool, args.seed, ImageCache()) if args.pool else None
    stats = pretrain_encoder(vision, train.instances, train_cats, cfg.model.crop, steps,
                             cfg.train.encoder_pretrain.batch_size, cfg.train.encoder_pretrain.lr, "names",
                             seed=args.seed, pool=pool)
    print(f"encoder pre-training: {steps} steps, loss {stats['loss'][0]:.3f} -> {stats['loss'][1]:.3f}, "
          f"{time.time() - t0:.0f} s")
    names = {name_key(kp.name): c for cid, cls in keypoint_classes(train_cats, "names").items()
             for kp, c in zip(train_cats[cid].keypoints, cls)}
    base = MeanPositionBaseline(cfg.model.crop).fit(train.instances, train_cats)
    labels = category_labels(test, test_cats)
    preds = probe_predictions(vision, stats["head"], test, test_cats, names, base.predict,
                              cfg.model.crop)      # no generator given: the un-augmented crop
    acc = PCKAccumulator(cfg.eval.thresholds)
    for inst, pred in zip(test.instances, preds):
        acc.add(labels[inst.category_id], pred, inst.keypoints, inst.visible, inst.bbox)
    probe = acc.result()
    baseline = evaluate_baseline(base.predict, test, test_cats, cfg.eval.thresholds, labels)
    print("\n| unseen category | names seen in training | encoder probe PCK@0.2 | mean position PCK@0.2 |")
    print("|---|---:|---:|---:|")
    for cat in probe["per_category"]:
        c = next(v for v in test_cats.values() if labels[v.id] == cat)
        print(f"| {cat} | {100 * base.coverage(c):.0f}% | {100 * probe['per_category'][cat]['PCK@0.2']:.2f} | "
              f"{100 * baseline['per_category'][cat]['PCK@0.2']:.2f} |")
    for key in ("PCK@0.2", "mPCK"):
        print(f"| overall {key} | | {100 * probe['overall'][key]:.2f} | {100 * baseline['overall'][key]:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
