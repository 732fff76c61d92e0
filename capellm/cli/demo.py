"""`capellm demo`: train and evaluate CapeLLM on unseen synthetic categories (CPU).

    capellm demo [--out runs/demo] [--data data/synth] [--split 1] [--steps N] [--resume]
"""

from __future__ import annotations

import argparse


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="capellm demo",
                                description="Train and evaluate CapeLLM on unseen synthetic categories (CPU).")
    p.add_argument("--data", default="data/synth", help="benchmark folder (generated if missing)")
    p.add_argument("--out", default="runs/demo", help="run folder: checkpoint, metrics, pictures")
    p.add_argument("--split", type=int, default=1, choices=range(1, 6), help="benchmark split (1-5)")
    p.add_argument("--preset", default="demo", help="model/training preset (demo; smollm2 for the real SmolLM2-135M)")
    p.add_argument("--steps", type=int, default=None, help="optimiser steps (default: the preset's)")
    p.add_argument("--pictures", type=int, default=8, help="test instances drawn to pictures/")
    p.add_argument("--resume", action="store_true", help="continue an interrupted demo run")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier demo run in --out")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    from capellm.demo import category_table, comparison_table, demo_config, run
    from capellm.evaluate import reliance_sentence
    from capellm.metrics import format_table

    cfg = demo_config(args.data, args.out, args.split, args.preset, args.steps, args.seed)
    s = run(cfg, args.data, args.split, args.preset, args.pictures, args.resume, overwrite=args.overwrite)
    result, baselines, reliance, times = s["model"], s["baselines"], s["image_reliance"], s["seconds"]
    print()
    print(format_table(result, cfg.eval.thresholds, title="CapeLLM demo model on unseen test categories (%)"))
    print()
    print(comparison_table(result, baselines, cfg.eval.thresholds))
    print()
    print(category_table(result, baselines))
    print()
    print(reliance_sentence(reliance))
    print()
    print("time: " + ", ".join(f"{k} {v:.0f} s" for k, v in times.items()) + f", total {sum(times.values()):.0f} s")
    print(f"metrics: {args.out}/metrics.json   checkpoint: {s['checkpoint']}   pictures: {args.out}/pictures")
    return 0
