"""The `capellm` command: thin entry points over the library.

    capellm demo    [--out runs/demo]                      train + evaluate on unseen synthetic categories (CPU)
    capellm ablate  [--study instruction|rounds|all]       the paper's Tables 3 and 4 on the synthetic benchmark
    capellm train   [--preset NAME] [--config FILE] [--resume] [--<field> VALUE ...]
    capellm eval    --checkpoint DIR --ann FILE [--out metrics.json] [--protocol pairs --shots 1|5]
    capellm predict --checkpoint DIR --image IMG --category NAME_OR_FILE [--box x,y,w,h]
    capellm config  [--preset NAME] [--config FILE]        print the resolved configuration
    capellm data synth --out DIR                           generate the synthetic benchmark
    capellm data check-mp100 --root DIR [--ann-dir DIR]    which MP-100 images are present, per category
    capellm report --metrics M1.json ... [--out table.md]  average the 5 splits into the paper's Table 2
    capellm category new NAME --keypoints "a,b,c"          start a category file for your own object
    capellm app     --checkpoint DIR                       web app (needs the `app` extra)

Every config field is also a flag named by its dotted path (`--train.lr 1e-4`), derived from the
dataclasses in capellm.config. Each subcommand is a function taking argv, so tests call it in-process.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import yaml


def _config_parser(desc: str, sections=None) -> argparse.ArgumentParser:
    from capellm.config import PRESETS, add_arguments

    p = argparse.ArgumentParser(description=desc)
    p.add_argument("--preset", default="tiny", choices=PRESETS, help="named base configuration")
    p.add_argument("--config", help="YAML file with config fields (applied over the preset)")
    add_arguments(p, sections=sections)
    return p


def _resolve_config(args):
    from capellm.config import apply_arguments, load_yaml_config, preset

    cfg = preset(args.preset)
    if args.config:
        cfg = load_yaml_config(args.config, base=cfg)
    return apply_arguments(cfg, args)


def cmd_train(argv=None) -> int:
    p = _config_parser("Train CapeLLM on an MP-100-format annotation file.")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint in train.out_dir")
    p.add_argument("--no-eval", action="store_true", help="skip evaluating data.val_file after training")
    args = p.parse_args(argv)
    cfg = _resolve_config(args)
    if not cfg.data.train_file:
        p.error("data.train_file is required (--data.train_file FILE)")
    from capellm.train import train

    final = train(cfg, resume=args.resume)
    print(f"model saved to {final}")
    if cfg.data.val_file and not args.no_eval:
        return cmd_eval(["--checkpoint", str(final), "--ann", cfg.data.val_file,
                         "--image-root", cfg.data.image_root, "--categories", cfg.data.categories,
                         "--out", str(Path(cfg.train.out_dir) / "metrics_val.json")])
    return 0


def cmd_eval(argv=None) -> int:
    from capellm.config import EvalConfig, add_arguments, apply_arguments, from_dict, to_dict

    p = argparse.ArgumentParser(description="PCK of a checkpoint on an annotation file (every instance once, "
                                            "or the support-query pairs with --protocol pairs).")
    p.add_argument("--checkpoint", required=True, help="model folder (train.out_dir/model or a checkpoint)")
    p.add_argument("--ann", required=True, help="annotation JSON (MP-100 / COCO keypoints)")
    p.add_argument("--image-root", default="", help="folder the JSON's file_name is relative to")
    p.add_argument("--categories", default="mp100", help="folder of category YAML files, or 'mp100'")
    p.add_argument("--out", default="", help="metrics JSON (default: next to the checkpoint)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument("--protocol", default="instances", choices=("instances", "pairs"),
                   help="instances: every instance once (official CapeLLM); pairs: the support-query "
                        "pairs of the earlier CAPE code (200 episodes x 15 queries per category)")
    p.add_argument("--shots", type=int, default=1, help="supports per episode for --protocol pairs (1 or 5)")
    add_arguments(p, sections=("eval",))
    args = p.parse_args(argv)
    if args.shots < 1:
        p.error(f"--shots must be >= 1, got {args.shots}")
    from capellm.config import RunConfig

    ecfg = apply_arguments(RunConfig(), args).eval
    import torch

    from capellm.data.coco import load_keypoint_dataset
    from capellm.data.dataset import categories_for
    from capellm.evaluate import evaluate, write_report
    from capellm.model.capellm import CapeLLM

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = CapeLLM.from_pretrained(args.checkpoint, device=device)
    data = load_keypoint_dataset(args.ann, args.image_root or None)
    cats = categories_for(data, args.categories)
    if args.protocol == "pairs":
        from capellm.evaluate import evaluate_pairs

        result = evaluate_pairs(model, data, cats, ecfg, shots=args.shots)
        default_out = f"metrics_{Path(args.ann).stem}_pairs_{args.shots}shot.json"
    else:
        result = evaluate(model, data, cats, ecfg)
        default_out = f"metrics_{Path(args.ann).stem}.json"
    out = args.out or str(Path(args.checkpoint) / default_out)
    print(write_report(result, out, ecfg.thresholds))
    print(f"metrics written to {out} ({result['seconds']} s, {result['unparsed_answers']} unparsed answers)")
    return 0


def cmd_config(argv=None) -> int:
    p = _config_parser("Print the resolved configuration as YAML.")
    args = p.parse_args(argv)
    from capellm.config import to_dict

    print(yaml.safe_dump(to_dict(_resolve_config(args)), sort_keys=False), end="")
    return 0


def cmd_data(argv=None) -> int:
    argv = list(sys.argv[2:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: capellm data synth --out DIR [options]\n"
              "       capellm data check-mp100 --root DIR [--ann-dir DIR] [--json FILE] [--decode] [--strict]\n\n"
              "  synth        generate the synthetic category-agnostic benchmark (MP-100 format)\n"
              "  check-mp100  per category, how many MP-100 images are present, missing or unreadable")
        return 0
    if argv[0] == "synth":
        from capellm.data.synth import main as synth_main

        return synth_main(argv[1:]) or 0
    if argv[0] == "check-mp100":
        from capellm.data.mp100 import main as check_main

        return check_main(argv[1:])
    print(f"capellm data: unknown subcommand '{argv[0]}'", file=sys.stderr)
    return 2


def _delegate(module: str, function: str = "main"):
    """A subcommand whose implementation lives in `module` (imported only when it runs)."""
    def run(argv=None) -> int:
        import importlib

        return getattr(importlib.import_module(module), function)(argv)
    return run


COMMANDS = {"demo": _delegate("capellm.demo"), "ablate": _delegate("capellm.ablate"), "train": cmd_train,
            "eval": cmd_eval, "predict": _delegate("capellm.predict"), "config": cmd_config, "data": cmd_data,
            "report": _delegate("capellm.report"), "category": _delegate("capellm.predict", "category_main"),
            "app": _delegate("capellm.app")}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print(__doc__.strip().split("\n\n")[1])
        if argv and argv[0] not in ("-h", "--help"):
            print(f"\nunknown command '{argv[0]}'", file=sys.stderr)
            return 2
        return 0
    from capellm.config import ConfigError
    from capellm.data.categories import CategoryError

    try:
        return COMMANDS[argv[0]](argv[1:]) or 0
    except (ConfigError, CategoryError, FileNotFoundError) as e:
        print(f"capellm {argv[0]}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
