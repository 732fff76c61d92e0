"""Evaluation: PCK of a model on an annotation file (protocol 1: every instance once, no supports,
as the official CapeLLM evaluates; the support-query protocol builds on the same pieces).

Every instance is cropped exactly as in training (without augmentation), every labelled keypoint
is asked (one prompt per keypoint by default, as the official evaluation does), and answers are
mapped back to image pixels before scoring, so PCK is measured in the original image as in the
CAPE literature. Work is split across processes when run under accelerate.

`eval.decode` chooses how answers are read: "grammar" (our constrained decoding), "official" (the
authors' greedy decoding of 13 tokens and their regex parser, capellm.model.capellm), or "both",
which scores the same instances each way: the metrics' top level is the grammar's, and
`by_decoding` holds each decoding's scores side by side, so a reproduction reports both.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from capellm.config import EvalConfig
from capellm.data.categories import Category
from capellm.data.coco import Instance, KeypointDataset
from capellm.data.crops import crop_instance
from capellm.data.images import ImageError, load_image
from capellm.metrics import PCKAccumulator, format_table
from capellm.model.capellm import CapeLLM, Prediction
from capellm.utils import atomic_write_json


log = logging.getLogger("capellm.evaluate")

def category_labels(dataset: KeypointDataset, categories: dict[int, Category]) -> dict[int, str]:
    """Readable, unique category names for reports (MP-100 has two categories called 'face')."""
    names = {cid: categories[cid].name for cid in dataset.category_ids()}
    counts: dict[str, int] = {}
    for n in names.values():
        counts[n] = counts.get(n, 0) + 1
    return {cid: (n if counts[n] == 1 else f"{n}#{cid}") for cid, n in names.items()}


def decodings(cfg: EvalConfig, model: CapeLLM | None = None) -> list[str]:
    """The decodings `cfg.decode` asks for, the one reported at the top level first. A model that
    answers with <KEYPOINT> tokens has no text to decode: its decoder gives the positions."""
    if getattr(model, "keypoint_head", None) is not None:
        return ["keypoint_token"]
    return ["grammar", "official"] if cfg.decode == "both" else [cfg.decode]


@torch.no_grad()
def predict_instances(model: CapeLLM, instances: list[Instance], categories: dict[int, Category],
                      batch_size: int, mode: str, progress: bool = True,
                      decoding: tuple[str, ...] = ("grammar",)) -> dict[str, list[Prediction]]:
    """Predictions for every keypoint of every instance, in image pixels, by each decoding (every
    crop is made once for all of them). An instance whose image fails to decode gets None (and a
    warning) instead of ending the evaluation: the caller scores the others and reports it."""
    preds: dict[str, list[Prediction | None]] = {d: [] for d in decoding}
    for i in tqdm(range(0, len(instances), batch_size), disable=not progress, desc="eval", dynamic_ncols=True):
        chunk = instances[i:i + batch_size]
        crops = []
        for x in chunk:
            try:
                crops.append(crop_instance(load_image(x.image_path), x.bbox, x.keypoints, x.visible, model.cfg.crop))
            except ImageError as e:
                log.warning("instance %s left out: %s", x.ann_id, e)
                crops.append(None)
        good = [j for j, c in enumerate(crops) if c is not None]
        cats = [categories[chunk[j].category_id] for j in good]
        for d in decoding:
            got = iter(model.predict_crops([crops[j] for j in good], cats, mode=mode, decoding=d) if good else [])
            preds[d].extend(next(got) if c is not None else None for c in crops)
    return preds


def _gathered(rows: list, accelerator) -> list:
    if accelerator is not None and accelerator.num_processes > 1:
        from accelerate.utils import gather_object

        return gather_object(rows)
    return rows


def _side_by_side(results: dict[str, dict], cfg: EvalConfig) -> dict:
    """The first decoding's result at the top level; with several, each one's under by_decoding."""
    names = list(results)
    result = dict(results[names[0]])
    result["decode"] = cfg.decode if len(names) > 1 else names[0]
    if len(names) > 1:
        keep = ("overall", "per_category", "category_mean", "unparsed_answers")
        result["by_decoding"] = {d: {k: r[k] for k in keep if k in r} for d, r in results.items()}
    return result


def coco_record(inst: Instance, pred: Prediction) -> dict:
    """One prediction in the COCO keypoint results format (what pycocotools' `loadRes` and
    xtcocotools read): keypoints as x, y, score per keypoint in image pixels, a keypoint without
    an answer as 0, 0, 0; the instance's score is the mean keypoint confidence."""
    kps = []
    conf = np.nan_to_num(np.asarray(pred.confidence, dtype=np.float64), nan=0.0)
    for (x, y), c in zip(pred.keypoints, conf):
        ok = np.isfinite(x) and np.isfinite(y)
        kps += [round(float(x), 2), round(float(y), 2), round(float(c), 4)] if ok else [0.0, 0.0, 0.0]
    return {"image_id": inst.image_id, "category_id": inst.category_id, "keypoints": kps,
            "score": round(float(conf.mean()) if len(conf) else 0.0, 4)}


def evaluate(model: CapeLLM, dataset: KeypointDataset, categories: dict[int, Category], cfg: EvalConfig,
             accelerator=None, progress: bool = True, coco: dict | None = None,
             predictions: dict | None = None) -> dict:
    """PCK per category and overall. Returns the metrics dict (see capellm.metrics). coco: a dict
    that receives, per decoding, the predictions in the COCO keypoint results format.
    predictions: a dict that receives this process's Prediction of each instance by annotation id
    (the top-level decoding's; for `wrong_image_pck`, which then need not predict them again)."""
    instances = dataset.instances if cfg.max_instances < 0 else dataset.instances[:cfg.max_instances]
    rank, world = (accelerator.process_index, accelerator.num_processes) if accelerator else (0, 1)
    mine = list(range(rank, len(instances), world))
    t0 = time.time()
    names = decodings(cfg, model)
    preds = predict_instances(model, [instances[i] for i in mine], categories, cfg.batch_size, cfg.mode,
                              progress and rank == 0, tuple(names))
    labels = category_labels(dataset, categories)
    if predictions is not None:
        predictions.update((instances[i].ann_id, p) for i, p in zip(mine, preds[names[0]]) if p is not None)
    results = {}
    failed = []
    for d in names:
        rows = _gathered([(i, p.keypoints, len(p.missing)) for i, p in zip(mine, preds[d]) if p is not None],
                         accelerator)
        failed = _gathered([instances[i].ann_id for i, p in zip(mine, preds[d]) if p is None], accelerator)
        if coco is not None:
            coco[d] = _gathered([coco_record(instances[i], p) for i, p in zip(mine, preds[d]) if p is not None],
                                accelerator)
        acc = PCKAccumulator(cfg.thresholds)
        n_missing = 0
        for i, kps, miss in sorted(rows, key=lambda r: r[0]):
            x = instances[i]
            acc.add(labels[x.category_id], kps, x.keypoints, x.visible, x.bbox)
            n_missing += miss
        if not rows:
            raise ImageError(f"{dataset.path}: no instance's image could be decoded (e.g. annotation {failed[0]})")
        results[d] = {**acc.result(), "unparsed_answers": n_missing}
    result = _side_by_side(results, cfg)
    result["failed_instances"] = sorted(failed)         # images that did not decode: not scored
    result["annotation_file"] = str(dataset.path)
    result["protocol"] = "every instance, no supports"
    result["mode"] = cfg.mode
    result["seconds"] = round(time.time() - t0, 2)
    return result


@torch.no_grad()
def image_reliance(model: CapeLLM, dataset: KeypointDataset, categories: dict[int, Category],
                   samples: int = 64, batch_size: int = 16, seed: int = 0) -> dict:
    """Does the model read the image? The answer loss of training-style conversations (no
    augmentation) with each instance's own crop, and again with every conversation paired with
    the crop of another instance of the batch. A gap near zero means the answers come from the
    text alone: the model has learnt a per-name prior and ignores the pixels.

    Up to `samples` instances are taken evenly over the data set, and up to `samples`
    conversations (groups of k keypoints) evenly over their epoch plan; a last batch of one
    conversation has nothing to swap with and is left out. Returns {"loss", "loss_other_images",
    "gap", "conversations"} (losses per answer token; conversations measured).
    """
    from capellm.data.dataset import InstructionDataset, collate

    if not dataset.instances:
        raise ValueError(f"{dataset.path}: no instances to measure image reliance on")
    step = max(1, len(dataset.instances) // samples)
    ds = InstructionDataset(dataset.instances[::step][:samples], categories, model.cfg.crop, model.cfg.instruction,
                            model.fmt, model.segment_tokenizer, seed=seed, augment=False)
    idx = list(range(0, len(ds), max(1, len(ds) // samples)))[:samples]
    was_training = model.training
    model.eval()
    total = {"own": 0.0, "other": 0.0}
    n_tokens = n_conversations = 0
    for i in range(0, len(idx), batch_size):
        batch = collate([ds[j] for j in idx[i:i + batch_size]], model.tokenizer.pad_token_id)
        batch = {k: v.to(model.device) for k, v in batch.items()}
        if len(batch["input_ids"]) < 2:
            break                       # nothing to swap with
        own = model(batch)
        other = model({**batch, "pixel_values": batch["pixel_values"].roll(1, dims=0)})
        total["own"] += float(own["loss"]) * own["n_tokens"]
        total["other"] += float(other["loss"]) * own["n_tokens"]
        n_tokens += own["n_tokens"]
        n_conversations += len(batch["input_ids"])
    model.train(was_training)
    if n_tokens == 0:
        raise ValueError(f"{dataset.path}: need at least two conversations to swap images between")
    own, other = total["own"] / n_tokens, total["other"] / n_tokens
    return {"loss": own, "loss_other_images": other, "gap": other - own, "conversations": n_conversations}


@torch.no_grad()
def wrong_image_pck(model: CapeLLM, dataset: KeypointDataset, categories: dict[int, Category], cfg: EvalConfig,
                    per_category: int = 50, threshold: float = 0.2, own: dict | None = None) -> dict:
    """Does the model read the image? PCK of the model on each instance with its own crop, and
    again with the crop of ANOTHER instance of the same category in its place: same question,
    same box (the answer is mapped back through the instance's own crop), only the pixels differ.
    A model that answers from the keypoint's name alone scores the same twice; one that reads the
    picture loses what it read. Up to `per_category` instances of each category are used (the
    first ones, each paired with the next one of its category). `own`: Predictions with each
    instance's own crop by annotation id, already made (`evaluate(..., predictions=own)`); the
    instances it lacks are predicted here. Returns {"own", "other", "drop", "instances",
    "threshold"} (PCK at `threshold`, fractions)."""
    from dataclasses import replace as dc_replace

    from capellm.metrics import instance_pck

    chosen = [insts[:per_category] for insts in dataset.by_category().values() if len(insts) >= 2]
    own_scores, other_scores = [], []
    for insts in chosen:
        crops = [crop_instance(load_image(x.image_path), x.bbox, x.keypoints, x.visible, model.cfg.crop)
                 for x in insts]
        swapped = [dc_replace(c, pixel_values=crops[(i + 1) % len(crops)].pixel_values) for i, c in enumerate(crops)]
        cats = [categories[x.category_id] for x in insts]
        for i in range(0, len(insts), cfg.batch_size):
            sl = slice(i, i + cfg.batch_size)
            given = [(own or {}).get(x.ann_id) for x in insts[sl]]
            todo = [j for j, p in enumerate(given) if p is None]
            if todo:
                made = model.predict_crops([crops[sl][j] for j in todo], [cats[sl][j] for j in todo], mode=cfg.mode)
                for j, p in zip(todo, made):
                    given[j] = p
            others = model.predict_crops(swapped[sl], cats[sl], mode=cfg.mode)
            for scores, preds in ((own_scores, given), (other_scores, others)):
                for x, p in zip(insts[sl], preds):
                    scores.append(instance_pck(p.keypoints, x.keypoints, x.visible, x.bbox, threshold))
    if not own_scores:
        raise ValueError(f"{dataset.path}: no category with two instances to swap images between")
    own, other = float(np.mean(own_scores)), float(np.mean(other_scores))
    return {"own": own, "other": other, "drop": own - other, "instances": len(own_scores), "threshold": threshold}


def reliance_sentence(r: dict) -> str:
    """What `wrong_image_pck` says, in words that match its numbers."""
    t = f"PCK@{r['threshold']:g}"
    head = (f"image reliance: given another instance's image of the same category (same question, same box), "
            f"{t} goes from {100 * r['own']:.1f} to {100 * r['other']:.1f} ({-100 * r['drop']:+.1f} points "
            f"on {r['instances']} instances)")
    drop = 100 * r["drop"]
    if drop >= 10:
        return head + ": the model reads the image."
    if drop >= 3:
        return head + ": the model reads the image a little; most of its answer comes from the keypoint's name."
    return head + ": the answers come from the keypoint's name, not from the image."


def write_report(result: dict, out: str | Path, thresholds) -> str:
    """Write the metrics JSON; returns the table to print (one per decoding)."""
    atomic_write_json(out, result)
    by = result.get("by_decoding")
    if not by:
        return format_table(result, thresholds, title=f"decoding: {result.get('decode', 'grammar')}")
    return "\n\n".join(format_table(r, thresholds, title=f"decoding: {d}") for d, r in by.items())


# ----------------------------------------------------------------------------------------------
# Protocol 2: support-query pairs (POMNet / CapeFormer / GraphCAPE / CapeX; CapeLLM Table 2)


def score_pairs(dataset: KeypointDataset, pairs, predictions: dict[int, np.ndarray], labels: dict[int, str],
                thresholds) -> dict:
    """PCK over support-query pairs: one score per pair, with the pair's mask.

    predictions: instance index -> [K, 2] image pixels for every query of `pairs` (the model needs
    no supports, so a query's prediction is the same in every pair it belongs to). The mask is the
    query's labels AND every support's (capellm.data.episodes.pair_mask), the box the query's.
    Returns the metrics dict of capellm.metrics, "instances" counting pairs.
    """
    from capellm.data.episodes import pair_mask

    acc = PCKAccumulator(thresholds)
    for p in pairs:
        q = dataset.instances[p.query]
        acc.add(labels[p.category_id], predictions[p.query], q.keypoints, pair_mask(dataset, p), q.bbox)
    return acc.result()


def evaluate_pairs(model: CapeLLM, dataset: KeypointDataset, categories: dict[int, Category], cfg: EvalConfig,
                   shots: int, accelerator=None, progress: bool = True, skip_small: bool = False) -> dict:
    """PCK on the reference's support-query pairs (`shots`-shot), per category and overall.

    The pairs are built from the whole `dataset` exactly as the earlier CAPE code builds them
    (capellm.data.episodes). Each query instance is predicted ONCE and scored in every pair it
    belongs to; only the mask differs between its pairs. `cfg.max_instances` >= 0 keeps only the
    pairs whose query is among the first N instances (a quick check, not the protocol).
    """
    from capellm.data.episodes import build_pairs

    pairs = build_pairs(dataset, shots, skip_small=skip_small)
    if cfg.max_instances >= 0:
        pairs = [p for p in pairs if p.query < cfg.max_instances]
    queries = sorted({p.query for p in pairs})
    rank, world = (accelerator.process_index, accelerator.num_processes) if accelerator else (0, 1)
    mine = queries[rank::world]
    t0 = time.time()
    names = decodings(cfg, model)
    preds = predict_instances(model, [dataset.instances[i] for i in mine], categories, cfg.batch_size, cfg.mode,
                              progress and rank == 0, tuple(names))
    labels = category_labels(dataset, categories)
    results = {}
    failed: list = []
    for d in names:
        rows = _gathered([(i, p.keypoints, len(p.missing)) for i, p in zip(mine, preds[d]) if p is not None],
                         accelerator)
        failed = _gathered([i for i, p in zip(mine, preds[d]) if p is None], accelerator)
        scored = [pr for pr in pairs if pr.query not in set(failed)]   # a query that did not decode: left out
        results[d] = {**score_pairs(dataset, scored, {i: kps for i, kps, _ in rows}, labels, cfg.thresholds),
                      "unparsed_answers": sum(miss for _, _, miss in rows)}
    result = _side_by_side(results, cfg)
    result["failed_instances"] = sorted(dataset.instances[i].ann_id for i in failed)
    result["annotation_file"] = str(dataset.path)
    result["protocol"] = f"support-query pairs, {shots}-shot"
    result["shots"] = shots
    result["pairs"] = len(pairs)
    result["query_instances"] = len(queries)
    result["mode"] = cfg.mode
    result["seconds"] = round(time.time() - t0, 2)
    return result
