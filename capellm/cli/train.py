"""`capellm train`: train CapeLLM on an MP-100-format annotation file.

    capellm train [--preset NAME] [--config FILE] [--resume] [--<field> VALUE ...]

Without --preset the run is the paper's configuration (`paper-l`); `capellm config --preset NAME`
prints what a preset holds. After training, `data.val_file` (if set) is evaluated.
"""

from __future__ import annotations

import logging
from pathlib import Path

from capellm.cli.common import config_parser, resolve_config

log = logging.getLogger("capellm.train")


def main(argv=None) -> int:
    p = config_parser("capellm train", "Train CapeLLM on an MP-100-format annotation file.")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint in train.out_dir")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier run in train.out_dir")
    p.add_argument("--no-eval", action="store_true", help="skip evaluating data.val_file after training")
    args = p.parse_args(argv)
    cfg = resolve_config(args)
    if not cfg.data.train_file:
        p.error("data.train_file is required (--data.train_file FILE)")
    from capellm.train import train

    log.info("preset %s: vision %s, LLM %s", args.preset, cfg.model.vision.name_or_path, cfg.model.llm.name_or_path)
    final = train(cfg, resume=args.resume, overwrite=args.overwrite, evaluate_val=not args.no_eval)
    print(f"model saved to {final}")
    if cfg.data.val_file and not args.no_eval:
        print(f"validation metrics: {Path(cfg.train.out_dir) / 'metrics_val.json'}")
    return 0
