"""The answer's distribution on a trained model: which point to report, how well each confidence
separates right from wrong answers, and what computing the distribution costs.

Decodes the test split's instances twice per batch, interleaved: the engine as it is (greedy
under the grammar) and with `distribution=True` (capellm.inference.uncertainty). Reports
- PCK of the greedy answer, of the distribution's mode and of its expected value;
- for "correct at PCK@0.2" (greedy answer, labelled keypoints): the area under the ROC curve of
  today's confidence (geometric mean token probability) and of the distribution's spread
  (smaller = more confident), and a reliability table of each (equal-count bins);
- the time of both decodings and their ratio.

    python benchmarks/uncertainty.py --checkpoint runs/demo/model --out runs/uncertainty.json
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from _split import Split, add_split_arguments, hardware, write_json

from capellm.metrics import PCKAccumulator


def auroc(score: np.ndarray, positive: np.ndarray) -> float:
    """P(score of a random positive > score of a random negative), ties counted half."""
    _, inverse, counts = np.unique(score, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2)[inverse]          # average ranks of ties, from 1
    n_pos, n_neg = positive.sum(), (~positive).sum()
    if not n_pos or not n_neg:
        return float("nan")
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def reliability(score: np.ndarray, correct: np.ndarray, bins: int) -> list[dict]:
    order = np.argsort(score)
    rows = []
    for part in np.array_split(order, bins):
        rows.append({"from": float(score[part].min()), "to": float(score[part].max()),
                     "mean": float(score[part].mean()), "accuracy": float(correct[part].mean()), "n": len(part)})
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_split_arguments(p, max_instances=400)
    p.add_argument("--mode", default="single", choices=["single", "multi"])
    p.add_argument("--bins", type=int, default=5)
    args = p.parse_args(argv)
    split = Split(args)
    model, labels, insts = split.model, split.labels, split.instances
    acc = {k: PCKAccumulator() for k in ("greedy", "mode", "mean")}
    conf, spread, correct = [], [], []
    seconds = {"plain": 0.0, "distribution": 0.0}
    for chunk, crops, cc in split.batches():
        t0 = time.perf_counter()
        plain = model.predict_crops(crops, cc, mode=args.mode)
        t1 = time.perf_counter()
        preds = model.predict_crops(crops, cc, mode=args.mode, distribution=True)
        t2 = time.perf_counter()
        seconds["plain"] += t1 - t0
        seconds["distribution"] += t2 - t1
        for x, a, pr in zip(chunk, plain, preds):
            assert a.answers == pr.answers, "the distribution changed an answer"
            for key, pts in (("greedy", pr.keypoints), ("mode", pr.mode), ("mean", pr.mean)):
                acc[key].add(labels[x.category_id], pts, x.keypoints, x.visible, x.bbox)
            side = max(float(x.bbox[2]), float(x.bbox[3]))
            d = np.linalg.norm(pr.keypoints - x.keypoints, axis=-1) / side
            ok = np.asarray(x.visible, bool) & ~np.isnan(d)
            correct.extend((d[ok] < 0.2).tolist())
            conf.extend(pr.confidence[ok].tolist())
            spread.extend((np.linalg.norm(pr.spread[ok], axis=-1) / side).tolist())
    conf, spread, correct = np.array(conf), np.array(spread), np.array(correct, bool)
    pck = {k: {t: round(100 * v, 2) for t, v in a.result()["overall"].items() if t != "instances"}
           for k, a in acc.items()}
    result = {
        "checkpoint": args.checkpoint, "instances": len(insts), "keypoints": int(correct.size), "mode": args.mode,
        "pck": pck,
        "auroc_correct_at_0.2": {"confidence": round(auroc(conf, correct), 4),
                                 "spread": round(auroc(-spread, correct), 4)},
        "reliability_confidence": reliability(conf, correct, args.bins),
        "reliability_spread_box_units": reliability(spread, correct, args.bins),
        "seconds": {k: round(v, 2) for k, v in seconds.items()},
        "cost_ratio": round(seconds["distribution"] / seconds["plain"], 3),
        "hardware": hardware(),
    }
    print(json.dumps({k: v for k, v in result.items() if not k.startswith("reliability")}, indent=1))
    for key in ("reliability_confidence", "reliability_spread_box_units"):
        print(key)
        for r in result[key]:
            print(f"  {r['from']:.4f}-{r['to']:.4f}  mean {r['mean']:.4f}  accuracy {100 * r['accuracy']:.1f} %"
                  f"  (n={r['n']})")
    write_json(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
