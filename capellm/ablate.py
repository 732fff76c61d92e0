"""`capellm ablate`: the paper's instruction ablations on the synthetic benchmark.

- `--study instruction` (Table 3): keypoint name only; name + description (the default);
  name + description + the category's keypoint list.
- `--study rounds` (Table 4): k = 1, 2, 4, 6, 8 keypoints per conversation.

Each variant trains the `demo` preset from the same seed on the same split for the same number
of optimiser steps, and is evaluated on the split's unseen test categories. (The paper trains a
fixed number of epochs; with a fixed step budget every variant sees the same number of images,
which on a CPU budget is the fairer comparison. Larger k asks more keypoints per image.)
Results go to `<out>/ablations.json` and a markdown table `<out>/ablations.md`; finished variants
are skipped when the command is run again, so an interrupted study continues.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from capellm.utils import atomic_write_json, atomic_write_text

STUDIES = {
    "instruction": [
        ("name only", {"description": False}),
        ("name + description", {}),
        ("name + description + keypoint list", {"keypoint_list": True}),
    ],
    "rounds": [(f"k = {k}", {"k": k}) for k in (1, 2, 4, 6, 8)],
}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Instruction ablations (paper Tables 3 and 4) on the synthetic benchmark.")
    p.add_argument("--study", choices=(*STUDIES, "all"), default="all")
    p.add_argument("--data", default="data/synth")
    p.add_argument("--out", default="runs/ablations")
    p.add_argument("--split", type=int, default=1, choices=range(1, 6))
    p.add_argument("--steps", type=int, default=None, help="optimiser steps per variant (default: the demo's)")
    p.add_argument("--seed", type=int, default=0)
    return p


def run_variant(args, name: str, instruction: dict) -> dict:
    from dataclasses import replace

    from capellm.data import synth
    from capellm.data.coco import load_keypoint_dataset
    from capellm.data.dataset import categories_for
    from capellm.demo import demo_config
    from capellm.evaluate import evaluate
    from capellm.model.capellm import CapeLLM
    from capellm.train import train

    if not synth.is_complete(args.data):
        synth.generate(args.data, seed=0)
    slug = name.replace(" ", "").replace("+", "_").replace("=", "")
    ns = argparse.Namespace(data=args.data, out=str(Path(args.out) / slug), split=args.split, preset="demo",
                            steps=args.steps, seed=args.seed)
    cfg = demo_config(ns)
    cfg.model.instruction = replace(cfg.model.instruction, **instruction)
    final = train(cfg, resume=True)
    test = load_keypoint_dataset(cfg.data.test_file, cfg.data.image_root)
    model = CapeLLM.from_pretrained(final)
    result = evaluate(model, test, categories_for(test, cfg.data.categories), cfg.eval)
    return {"variant": name, "instruction": instruction, "steps": cfg.train.max_steps, **result["overall"],
            "unparsed_answers": result["unparsed_answers"]}


def table(rows: list[dict]) -> str:
    lines = ["| variant | PCK@0.05 | PCK@0.1 | PCK@0.2 | mPCK |", "|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['variant']} | {100 * r['PCK@0.05']:.2f} | {100 * r['PCK@0.1']:.2f} | "
                     f"{100 * r['PCK@0.2']:.2f} | {100 * r['mPCK']:.2f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    out = Path(args.out)
    store = out / "ablations.json"
    done = json.loads(store.read_text()) if store.exists() else {}
    studies = list(STUDIES) if args.study == "all" else [args.study]
    for study in studies:
        for name, instruction in STUDIES[study]:
            key = f"{study}/{name}"
            if key in done:
                continue
            print(f"== {study}: {name}")
            done[key] = run_variant(args, name, instruction)
            atomic_write_json(store, done)
    md = []
    for study in studies:
        rows = [done[f"{study}/{n}"] for n, _ in STUDIES[study]]
        md += [f"### {study} (split {args.split}, unseen test categories, %)", "", table(rows), ""]
    atomic_write_text(out / "ablations.md", "\n".join(md))
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
