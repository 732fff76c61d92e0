"""`capellm demo`: the whole method on a laptop CPU, on categories the model never saw.

1. Generate the synthetic benchmark (capellm.synth) unless it is already complete.
2. Train the `demo` preset on split N's TRAIN categories: the paper's code path (ViT encoder ->
   linear projector -> decoder-only LM, multi-round instructions, answer-only loss, text
   coordinates) at a size a 2-core CPU trains in minutes. No pretrained DINOv2 installs offline,
   so the small encoder is first pre-trained alone on the same categories (capellm.pretrain) and
   then frozen; projector and LM are trained in full. The LM starts from scratch, so the question
   names the keypoint without its description (docs/demo.md).
3. Evaluate PCK on split N's TEST categories (unseen), with the same evaluator scoring two
   baselines that see no pixels: the box centre, and the mean position of each keypoint name over
   the training categories.
4. Write metrics.json, the checkpoint, and pictures (prediction beside ground truth).

`run` does it all and returns the summary that metrics.json holds, with every stage's wall time;
`capellm.cli.demo` prints it. The README quotes a real run.
"""

from __future__ import annotations

import time
from pathlib import Path

from capellm.utils import atomic_write_json


def demo_config(data: str = "data/synth", out: str = "runs/demo", split: int = 1, preset_name: str = "demo",
                steps: int | None = None, seed: int = 0):
    """The RunConfig of a demo run on split `split` of the benchmark in `data`."""
    from capellm.config import preset

    cfg = preset(preset_name)
    data = Path(data)
    cfg.data.train_file = str(data / "annotations" / f"synth_split{split}_train.json")
    cfg.data.test_file = str(data / "annotations" / f"synth_split{split}_test.json")
    cfg.data.image_root = str(data / "images")
    cfg.data.categories = str(data / "categories")
    cfg.train.out_dir = out
    cfg.train.seed = seed
    if steps:
        cfg.train.max_steps = steps
    return cfg


def run(cfg, data: str, split: int = 1, preset_name: str = "demo", pictures: int = 8, resume: bool = False,
        say=print, overwrite: bool = False) -> dict:
    """Generate (if needed), train, evaluate beside the baselines, draw; returns the summary
    (also written to `<train.out_dir>/metrics.json`). `say` receives one line per stage."""
    import torch

    from capellm import synth
    from capellm.baselines import MeanPositionBaseline, centre_prediction, evaluate_baseline
    from capellm.data.coco import load_keypoint_dataset
    from capellm.data.dataset import categories_for
    from capellm.evaluate import category_labels, evaluate, wrong_image_pck
    from capellm.model.capellm import CapeLLM
    from capellm.train import train

    times: dict[str, float] = {}
    out = Path(cfg.train.out_dir)

    t = time.time()
    if not synth.is_complete(data):
        say(f"[1/4] generating the synthetic benchmark in {data} ...")
        synth.generate(data, seed=0)
    else:
        say(f"[1/4] benchmark found in {data}")
        if note := synth.stale_note(data):
            say("      " + note)
    times["generate"] = time.time() - t

    train_data = load_keypoint_dataset(cfg.data.train_file, cfg.data.image_root)
    test_data = load_keypoint_dataset(cfg.data.test_file, cfg.data.image_root)
    train_cats = categories_for(train_data, cfg.data.categories)
    test_cats = categories_for(test_data, cfg.data.categories)
    say(f"      split {split}: {len(train_cats)} train categories ({len(train_data)} instances), "
        f"{len(test_cats)} unseen test categories ({len(test_data)} instances)")

    t = time.time()
    say(f"[2/4] training preset '{preset_name}' on the train categories ...")
    torch.set_num_threads(max(1, torch.get_num_threads()))
    final = train(cfg, resume=resume, overwrite=overwrite)
    times["train"] = time.time() - t

    t = time.time()
    say("[3/4] evaluating on the unseen test categories ...")
    model = CapeLLM.from_pretrained(final)
    own: dict = {}
    result = evaluate(model, test_data, test_cats, cfg.eval, predictions=own)
    reliance = wrong_image_pck(model, test_data, test_cats, cfg.eval, own=own)
    labels = category_labels(test_data, test_cats)
    mean_pos = MeanPositionBaseline(cfg.model.crop).fit(train_data.instances, train_cats)
    baselines = {
        "centre of box": evaluate_baseline(centre_prediction, test_data, test_cats, cfg.eval.thresholds, labels),
        "mean position per name": evaluate_baseline(mean_pos.predict, test_data, test_cats, cfg.eval.thresholds, labels),
    }
    times["evaluate"] = time.time() - t

    t = time.time()
    say("[4/4] drawing pictures ...")
    drawn = draw_pictures(model, test_data, test_cats, out / "pictures", pictures)
    times["pictures"] = time.time() - t

    summary = {"split": split, "preset": preset_name, "model": result, "image_reliance": reliance,
               "baselines": baselines, "seconds": {k: round(v, 1) for k, v in times.items()},
               "checkpoint": str(final), "pictures": [str(p) for p in drawn],
               "train_categories": sorted(c.name for c in train_cats.values()),
               "test_categories": sorted(c.name for c in test_cats.values()),
               "name_coverage": {c.name: mean_pos.coverage(c) for c in test_cats.values()}}
    atomic_write_json(out / "metrics.json", summary)
    return summary


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

    from capellm.data.crops import crop_instance
    from capellm.data.images import load_image
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
