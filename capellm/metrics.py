"""PCK and mPCK as the CAPE literature computes them on MP-100 (../shared/mp100/README.md).

A keypoint is correct when its distance to the ground truth, in original image pixels, divided by
the longer side of the query's cleaned GT box, is strictly below the threshold. Only keypoints
labelled in the ground truth count (and, in the support-query protocol, labelled in every support:
pass that as `mask`). Per instance PCK = correct / counted, an instance with nothing counted scores
0 (as in the reference code); the reported PCK is the mean over instances. A missing prediction
(NaN) counts as wrong. mPCK is the mean of PCK over the thresholds 0.05 ... 0.25.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

THRESHOLDS = (0.05, 0.10, 0.15, 0.20, 0.25)


def instance_pck(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray, bbox, thr: float) -> float:
    """pred, gt: [K, 2] pixels; mask: bool [K] keypoints that count; bbox: [x, y, w, h]."""
    mask = np.asarray(mask, bool)
    if not mask.any():
        return 0.0
    norm = max(float(bbox[2]), float(bbox[3]))
    d = np.linalg.norm(np.asarray(pred, float) - np.asarray(gt, float), axis=-1) / norm
    correct = np.where(np.isnan(d), False, d < thr)
    return float(correct[mask].mean())


class PCKAccumulator:
    """Collects per-instance PCK at every threshold, grouped by category."""

    def __init__(self, thresholds=THRESHOLDS):
        self.thresholds = tuple(float(t) for t in thresholds)
        self.scores: dict[object, list[list[float]]] = defaultdict(list)  # category -> [[pck@t]...]

    def add(self, category, pred, gt, mask, bbox) -> None:
        self.scores[category].append([instance_pck(pred, gt, mask, bbox, t) for t in self.thresholds])

    def _summary(self, rows: list[list[float]]) -> dict:
        a = np.asarray(rows, float)                 # [N, T]
        pck = a.mean(0)
        out = {f"PCK@{t:g}": float(p) for t, p in zip(self.thresholds, pck)}
        out["mPCK"] = float(pck.mean())
        out["instances"] = len(rows)
        return out

    def result(self) -> dict:
        """{"overall": {...}, "per_category": {cat: {...}}, "category_mean": {...}}.

        overall averages over all instances; category_mean averages the per-category values
        (equal weight per category; identical when every category has the same count, as in the
        MP-100 test files with 100 instances each).
        """
        per = {str(c): self._summary(r) for c, r in sorted(self.scores.items(), key=lambda kv: str(kv[0]))}
        all_rows = [r for rows in self.scores.values() for r in rows]
        if not all_rows:
            return {"overall": {}, "per_category": {}, "category_mean": {}}
        keys = [k for k in next(iter(per.values())) if k != "instances"]
        cat_mean = {k: float(np.mean([v[k] for v in per.values()])) for k in keys}
        return {"overall": self._summary(all_rows), "per_category": per, "category_mean": cat_mean}


def format_table(result: dict, thresholds=THRESHOLDS, title: str = "") -> str:
    """A plain-text table: one row per category, then the overall mean (values in %)."""
    cols = [f"PCK@{t:g}" for t in thresholds] + ["mPCK"]
    name_w = max([len("category")] + [len(c) for c in result.get("per_category", {})] + [len("overall")])
    lines = [title] if title else []
    lines.append(f"{'category':<{name_w}}  {'n':>5}  " + "  ".join(f"{c:>9}" for c in cols))
    for cat, v in result.get("per_category", {}).items():
        lines.append(f"{cat:<{name_w}}  {v['instances']:>5}  " + "  ".join(f"{100 * v[c]:9.2f}" for c in cols))
    o = result.get("overall")
    if o:
        lines.append(f"{'overall':<{name_w}}  {o['instances']:>5}  " + "  ".join(f"{100 * o[c]:9.2f}" for c in cols))
    return "\n".join(lines)
