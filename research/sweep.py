"""Train several variants of the demo side by side and watch whether each learns to read the image.

Made for a short GPU lease: the demo model learns a per-name text prior and ignores the
pixels, and the question is which change makes it look. Each variant is the demo configuration of
`capellm demo` plus dotted overrides, trained by `capellm.train.train` in chunks of `--every`
steps. After each chunk the variant logs the answer loss with each conversation's own crop and the
gap to another instance's crop (`capellm.evaluate.image_reliance`), on training and on unseen test
categories; a gap near zero means the model does not use the image. It stops at its
`train.max_steps` or at `--deadline` seconds of training, whichever comes first, and then scores
PCK on the unseen test categories. A killed sweep resumes: finished variants are skipped, the
others continue from their last checkpoint.

One variant a line of the variants file, `#` starts a comment:

    base
    lm2_lr1e-3   model.llm.random_config.num_hidden_layers=2 train.lr=1e-3
    pre600       train.encoder_pretrain.steps=600 model.vision.mode=frozen

(`train.encoder_pretrain.steps` trains the encoder alone first, `capellm.pretrain`.)

    python research/sweep.py variants.txt --data data/synth --out runs/sweep --parallel 2 --heldout data/synth_seed1

`--heldout DIR` also scores new instances of the training categories, which tells reading the
image apart from failing on new categories. The measurements are in research/demo_reading.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch


def parse_variant(line: str) -> tuple[str, dict]:
    """'NAME key=value ...' -> (name, nested overrides); values are Python literals or strings."""
    from capellm.config import parse_overrides

    name, *pairs = line.split()
    return name, parse_overrides(pairs, where=f"variant '{name}': ")


def read_variants(path: str) -> list[str]:
    lines = [ln.split("#", 1)[0].strip() for ln in Path(path).read_text().splitlines()]
    lines = [ln for ln in lines if ln]
    names = [ln.split()[0] for ln in lines]
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: variant names must be unique, got {names}")
    return lines


def variant_config(args, overrides: dict, run_dir: str):
    """The demo's configuration (`args`: preset, data, split, seed) with `overrides`, training into
    `run_dir`; random_config entries update the preset's, not replace them."""
    import copy

    from capellm.config import merge
    from capellm.demo import demo_config

    cfg = demo_config(args.data, run_dir, args.split, args.preset, seed=args.seed)
    overrides = copy.deepcopy(overrides)
    model = overrides.get("model", {})
    for part in ("vision", "llm"):
        extra = model.get(part, {}).get("random_config")
        if extra is not None:
            model[part]["random_config"] = {**getattr(cfg.model, part).random_config, **extra}
    if model.get("vision", {}).get("mode", "frozen") != "frozen":   # a trained encoder: no feature pool
        overrides.setdefault("train", {}).setdefault("frozen_features", 0)
    return merge(cfg, overrides)


def run_one(args, line: str) -> dict:
    """Train and measure one variant with `args.threads` torch threads (the caller's number is
    restored afterwards); returns (and stores in its folder) the result."""
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        return _run_one(args, line)
    finally:
        torch.set_num_threads(threads)


def _run_one(args, line: str) -> dict:
    from capellm import checkpoint as ckpt
    from capellm.data.coco import load_keypoint_dataset
    from capellm.data.dataset import categories_for
    from capellm.evaluate import evaluate, image_reliance
    from capellm.model.capellm import CapeLLM
    from capellm.train import train
    from capellm.utils import atomic_write_json

    name, overrides = parse_variant(line)
    run_dir = Path(args.out) / name

    def log(msg: str) -> None:
        text = f"[{name}] {msg}"
        print(text, flush=True)
        if args.log:
            with open(args.log, "a") as f:
                f.write(text + "\n")

    cfg = variant_config(args, overrides, str(run_dir))
    cfg.train.save_every = args.every
    splits = {}
    for split in ("train", "test"):
        data = load_keypoint_dataset(getattr(cfg.data, f"{split}_file"), cfg.data.image_root or None)
        splits[split] = (data, categories_for(data, cfg.data.categories))
    log(f"start: {line}")
    store = run_dir / "history.json"      # the checks so far, kept across a resume
    history = json.loads(store.read_text()) if store.exists() else []
    t0 = time.time()
    while True:
        last = ckpt.latest_checkpoint(cfg.train.out_dir)
        done = int(last.name.split("-")[-1]) if last is not None else 0
        if done >= cfg.train.max_steps or (done and time.time() - t0 > args.deadline):
            break
        train(cfg, resume=True, stop_after_steps=done + args.every)
        model = CapeLLM.from_pretrained(ckpt.latest_checkpoint(cfg.train.out_dir))
        row = {"step": min(done + args.every, cfg.train.max_steps), "seconds": round(time.time() - t0)}
        for split, (data, cats) in splits.items():
            r = image_reliance(model, data, cats, samples=args.gap_samples)
            row[f"{split}_loss"], row[f"{split}_gap"] = round(r["loss"], 4), round(r["gap"], 4)
        history.append(row)
        atomic_write_json(store, history)
        log(f"step {row['step']} ({row['seconds']} s): answer loss train {row['train_loss']:.4f} "
            f"gap {row['train_gap']:+.4f} | test {row['test_loss']:.4f} gap {row['test_gap']:+.4f}")
    model = CapeLLM.from_pretrained(ckpt.latest_checkpoint(cfg.train.out_dir))
    data, cats = splits["test"]
    scores = evaluate(model, data, cats, cfg.eval)
    overall = scores["overall"]
    result = {"variant": line, "steps": done, "seconds": round(time.time() - t0), "history": history,
              **{k: round(100 * overall[k], 2) for k in ("PCK@0.1", "PCK@0.2", "mPCK")},
              "PCK@0.2 per category": {c: round(100 * v["PCK@0.2"], 2) for c, v in scores["per_category"].items()}}
    if args.heldout:
        result["heldout"] = heldout_scores(model, cfg, args.heldout, *splits["train"], gap_samples=args.gap_samples)
        log(f"new instances of the training categories: {result['heldout']}")
    atomic_write_json(run_dir / "result.json", result)
    log(f"RESULT PCK@0.2 {result['PCK@0.2']} mPCK {result['mPCK']} after {done} steps")
    return result


def heldout_scores(model, cfg, root: str, train_data, train_cats, max_instances: int = 480,
                   gap_samples: int = 64) -> dict:
    """PCK of the model and of the mean-position baseline (fit on the training split) on new
    instances of the training categories: split `cfg`'s training file of the benchmark in `root`,
    generated with another seed (same categories, other instances). Tells reading the image apart
    from remembering the training instances, and both apart from failing on new categories."""
    import copy

    from capellm.baselines import MeanPositionBaseline, evaluate_baseline
    from capellm.data.coco import load_keypoint_dataset
    from capellm.data.dataset import categories_for
    from capellm.evaluate import category_labels, evaluate, image_reliance

    name = Path(cfg.data.train_file).name
    data = load_keypoint_dataset(str(Path(root) / "annotations" / name), str(Path(root) / "images"))
    cats = categories_for(data, str(Path(root) / "categories"))
    sub = copy.copy(data)
    sub.instances = data.instances[::max(1, len(data.instances) // max_instances)][:max_instances]
    model_pck = evaluate(model, sub, cats, cfg.eval)["overall"]
    base = MeanPositionBaseline(cfg.model.crop).fit(train_data.instances, train_cats)
    base_pck = evaluate_baseline(base.predict, sub, cats, cfg.eval.thresholds, category_labels(sub, cats))["overall"]
    return {"instances": len(sub.instances), "gap": round(image_reliance(model, data, cats, samples=gap_samples)["gap"], 4),
            "PCK@0.2": round(100 * model_pck["PCK@0.2"], 2), "mPCK": round(100 * model_pck["mPCK"], 2),
            "baseline PCK@0.2": round(100 * base_pck["PCK@0.2"], 2), "baseline mPCK": round(100 * base_pck["mPCK"], 2)}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Train demo variants side by side; log whether each reads the image.")
    p.add_argument("variants", help="file: one variant a line, 'NAME key=value ...'")
    p.add_argument("--data", default="data/synth", help="benchmark folder (generated if missing)")
    p.add_argument("--out", default="runs/sweep", help="one folder per variant, with result.json")
    p.add_argument("--preset", default="demo")
    p.add_argument("--split", type=int, default=1, choices=range(1, 6))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--every", type=int, default=250, help="steps between image-reliance checks")
    p.add_argument("--deadline", type=float, default=float("inf"),
                   help="seconds of training per variant (counted from its start in this invocation)")
    p.add_argument("--parallel", type=int, default=1, help="variants run at once, each in its own process")
    p.add_argument("--threads", type=int, default=None, help="torch threads per variant (default: cores/parallel)")
    p.add_argument("--log", default=None, help="also append every line to this file")
    p.add_argument("--heldout", default=None, help="also score new instances of the training categories: a "
                   "benchmark folder generated with another seed (made if missing)")
    p.add_argument("--gap-samples", type=int, default=64, help="conversations each image-reliance gap is measured on")
    p.add_argument("--only", default=None, help="(internal) run the variant of this line in this process")
    return p


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    if args.threads is None:
        args.threads = max(1, (os.cpu_count() or 1) // args.parallel)
    if args.only is not None:
        run_one(args, args.only)
        return 0
    from capellm import synth

    lines = read_variants(args.variants)
    if not synth.is_complete(args.data):
        synth.generate(args.data, seed=0)
    if args.heldout:                # the same settings as --data, another seed: new instances
        settings = json.loads((Path(args.data) / ".complete").read_text())["config"]
        synth.generate(args.heldout, **{**{k: settings[k] for k in ("images_per_category", "image_size",
                                                                     "categories", "num_splits")},
                                         "seed": settings["seed"] + 1})
    todo = [ln for ln in lines if not (Path(args.out) / ln.split()[0] / "result.json").exists()]
    if args.parallel == 1:
        for ln in todo:
            run_one(args, ln)
    else:
        base = [sys.executable, __file__, args.variants, "--data", args.data, "--out", args.out, "--preset",
                args.preset, "--split", str(args.split), "--seed", str(args.seed), "--every", str(args.every),
                "--deadline", str(args.deadline), "--threads", str(args.threads),
                "--gap-samples", str(args.gap_samples)] + (["--log", args.log] if args.log else [])
        base += ["--heldout", args.heldout] if args.heldout else []
        procs: list[subprocess.Popen] = []
        for ln in todo:
            while sum(p.poll() is None for p in procs) >= args.parallel:
                time.sleep(1)
            procs.append(subprocess.Popen(base + ["--only", ln]))
        failed = [p.args[-1] for p in procs if p.wait() != 0]
        if failed:
            print(f"failed variants: {failed}", file=sys.stderr)
    print("| variant | steps | train gap | test gap | PCK@0.2 | mPCK |\n|---|---:|---:|---:|---:|---:|")
    for ln in lines:
        path = Path(args.out) / ln.split()[0] / "result.json"
        if path.exists():
            r = json.loads(path.read_text())
            h = r["history"][-1] if r["history"] else {}
            print(f"| {ln} | {r['steps']} | {h.get('train_gap', '')} | {h.get('test_gap', '')} | "
                  f"{r['PCK@0.2']} | {r['mPCK']} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
