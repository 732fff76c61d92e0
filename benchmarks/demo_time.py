"""The whole demo, stage by stage: the earlier pipeline and today's, side by side in one run.

Each path runs `capellm demo`'s stages (capellm.demo.run: generate the benchmark into a fresh
folder, pre-train the encoder, train, evaluate beside the baselines, check image reliance) in its
own process, one after the other, and reports each stage's wall time:

  before   the demo as it was: 6,000 steps, the long question ("Where is the {keypoint} of the
           object in this image?"), float32 (pre-training too), the single-tensor AdamW, no image
           cache, every sample cropped and encoded afresh, turn markers and the fixed strings
           around answers spelt in several tokens, the LLM initialised at std 0.02 and AdamW's
           beta2 0.999 (the generator's PNG level and pre-training's batched loss are today's in
           both)
  after    today's demo preset and library defaults

--steps gives both trainings the same number of steps (the default: each path's own, 6,000 and
the preset's; the stages that do not depend on it are timed whole). Prints the stage times of each
path and the ratio of the totals.

    python benchmarks/demo_time.py --steps 600        # ~3 minutes a path on 2 cores
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time

BEFORE_STEPS = 6000     # the training steps of the demo at f30b644


def run_path(path: str, steps: int, work: str) -> dict:
    """One path's demo in this process (called in a subprocess per path)."""
    from dataclasses import replace

    import torch

    from capellm.demo import demo_config, run

    cfg = demo_config(f"{work}/synth", f"{work}/run", steps=steps or (BEFORE_STEPS if path == "before" else None))
    if path == "before":
        from unittest import mock

        from capellm.data.instructions import PromptFormat

        mock.patch.object(PromptFormat, "markers", lambda self: ()).start()
        cfg.model.llm.fuse_fixed_tokens = False
        cfg.train.frozen_features = 0
        cfg.train.betas = (0.9, 0.999)
        cfg.model.llm.random_config = {**cfg.model.llm.random_config, "initializer_range": 0.02}
        cfg.model.instruction = replace(cfg.model.instruction, question="Where is the {keypoint} of the {object} "
                                                                        "in this image?")
        cfg.train.mixed_precision = "no"
        cfg.data.image_cache_mb = 0
        import capellm.train as training

        training.make_optimizer = lambda groups, t: torch.optim.AdamW(groups, lr=t.lr, betas=t.betas,
                                                                      foreach=False)
    t = time.perf_counter()
    summary = run(cfg, f"{work}/synth", pictures=0, say=lambda *a: None)
    seconds = dict(summary["seconds"])
    seconds["total"] = round(time.perf_counter() - t, 1)
    return {"seconds": seconds, "PCK@0.2": summary["model"]["overall"]["PCK@0.2"]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=0, help="training steps of both paths (0: each path's own)")
    p.add_argument("--path", default="", help=argparse.SUPPRESS)   # internal: run one path
    p.add_argument("--work", default="", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.path:
        print(json.dumps(run_path(args.path, args.steps, args.work)))
        return 0
    import platform

    import torch

    rows = {}
    for path in ("before", "after"):
        with tempfile.TemporaryDirectory() as work:
            r = subprocess.run([sys.executable, __file__, "--path", path, "--steps", str(args.steps), "--work", work],
                               capture_output=True, text=True, check=True)
            rows[path] = json.loads(r.stdout.strip().splitlines()[-1])
    steps = args.steps or "their own"
    print(f"{platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads; demo preset, "
          f"{steps} training steps")
    for path, r in rows.items():
        s = r["seconds"]
        print(f"  {path:<7} " + ", ".join(f"{k} {v:.0f} s" for k, v in s.items())
              + f"; PCK@0.2 {100 * r['PCK@0.2']:.2f}")
    ratio = rows["before"]["seconds"]["total"] / rows["after"]["seconds"]["total"]
    print(f"  ratio before/after (total time): {ratio:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
