"""Confidence-ordered cumulative inference against one-keypoint-per-prompt and plain multi-round
decoding: PCK and time per instance, side by side on the same crops (capellm.inference.cumulative).

Variants, all under the coordinate grammar:
  single         every keypoint in its own prompt (the official evaluation)
  multi          k keypoints per conversation in keypoint order, answers in context (as trained)
  cumulative     single, then every keypoint asked again after the k - 1 most confident other
                 keypoints' answers (a conversation of the trained length)
  refine-half    the same for the least confident half only
  spread-order   cumulative, ranking by the answer distribution's spread instead of confidence
  all-context    cumulative with up to 8 other answers before each question (beyond training)

    python benchmarks/cumulative.py --checkpoint runs/demo/model --out runs/cumulative.json
"""

from __future__ import annotations

import argparse
import time

from _split import Split, add_split_arguments, hardware, write_json

from capellm.inference.cumulative import cumulative_predict
from capellm.metrics import PCKAccumulator


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_split_arguments(p)
    args = p.parse_args(argv)
    split = Split(args)
    model, labels, insts = split.model, split.labels, split.instances
    k = model.cfg.instruction.k
    variants = {
        "single": lambda c, g: model.predict_crops(c, g, mode="single"),
        "multi": lambda c, g: model.predict_crops(c, g, mode="multi"),
        "cumulative": lambda c, g: cumulative_predict(model, c, g, context=k - 1),
        "refine-half": lambda c, g: cumulative_predict(model, c, g, context=k - 1, refine=0.5),
        "spread-order": lambda c, g: cumulative_predict(model, c, g, context=k - 1, by="spread"),
        "all-context": lambda c, g: cumulative_predict(model, c, g, context=8),
    }
    acc = {v: PCKAccumulator() for v in variants}
    seconds = dict.fromkeys(variants, 0.0)
    for chunk, crops, cc in split.batches():
        for name, run in variants.items():          # interleaved: machine load hits all alike
            t0 = time.perf_counter()
            preds = run(crops, cc)
            seconds[name] += time.perf_counter() - t0
            for x, pr in zip(chunk, preds):
                acc[name].add(labels[x.category_id], pr.keypoints, x.keypoints, x.visible, x.bbox)
    rows = {}
    for name in variants:
        r = acc[name].result()["overall"]
        rows[name] = {"PCK@0.2": round(100 * r["PCK@0.2"], 2), "mPCK": round(100 * r["mPCK"], 2),
                      "ms_per_instance": round(1000 * seconds[name] / len(insts), 1)}
        print(f"{name:14s} PCK@0.2 {rows[name]['PCK@0.2']:6.2f}  mPCK {rows[name]['mPCK']:6.2f}  "
              f"{rows[name]['ms_per_instance']:7.1f} ms/instance")
    result = {"checkpoint": args.checkpoint, "instances": len(insts), "k": k, "variants": rows,
              "hardware": hardware()}
    write_json(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
