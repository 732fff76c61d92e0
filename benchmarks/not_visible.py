"""'Not visible' answers: how often a model trained with instruction.not_visible_rate > 0 says a
keypoint is not in the picture when it is not (precision, recall), and PCK on the labelled
keypoints, beside a model trained without the option.

The synthetic benchmark marks occluded keypoints as unlabelled; keypoints outside the crop count
as not visible too. Every keypoint of every instance is asked (one per prompt), as in evaluation.

    python benchmarks/not_visible.py --checkpoint runs/nv20/model --baseline runs/demo/model
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _split import Split, add_split_arguments, hardware, write_json

from capellm import CapeLLM
from capellm.data.dataset import labelled_in_crop
from capellm.metrics import PCKAccumulator


def score(model, split: Split) -> dict:
    acc = PCKAccumulator()
    tp = fp = fn = asked = 0
    seconds = 0.0
    for chunk, crops, cats in split.batches():
        t0 = time.perf_counter()
        preds = model.predict_crops(crops, cats)
        seconds += time.perf_counter() - t0
        for x, pr in zip(chunk, preds):
            acc.add(split.labels[x.category_id], pr.keypoints, x.keypoints, x.visible, x.bbox)
            seen = np.zeros(len(x.visible), bool)
            seen[labelled_in_crop(x, model.cfg.crop)] = True
            said = np.array([pr.missing.get(i) == "not visible" for i in range(len(seen))])
            tp += int((said & ~seen).sum())
            fp += int((said & seen).sum())
            fn += int((~said & ~seen).sum())
            asked += len(seen)
    r = acc.result()["overall"]
    return {"PCK@0.2": round(100 * r["PCK@0.2"], 2), "mPCK": round(100 * r["mPCK"], 2),
            "not_visible_precision": round(tp / (tp + fp), 4) if tp + fp else None,
            "not_visible_recall": round(tp / (tp + fn), 4) if tp + fn else None,
            "not_visible_keypoints": tp + fn, "keypoints": asked, "said_not_visible": tp + fp,
            "ms_per_instance": round(1000 * seconds / len(split.instances), 1)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_split_arguments(p, max_instances=1600)
    p.add_argument("--baseline", default="", help="a model trained without the option, scored alike")
    args = p.parse_args(argv)
    split = Split(args)
    result = {"instances": len(split.instances), "hardware": hardware(), "models": {}}
    models = {args.checkpoint: split.model}
    if args.baseline:
        models[args.baseline] = CapeLLM.from_pretrained(args.baseline).eval()
    for name, model in models.items():
        rate = model.cfg.instruction.not_visible_rate
        row = result["models"][name] = {"not_visible_rate": rate, **score(model, split)}
        print(f"{name}: rate {rate}: " + ", ".join(f"{k} {v}" for k, v in row.items() if k != "not_visible_rate"))
    write_json(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
