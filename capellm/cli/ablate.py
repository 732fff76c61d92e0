"""`capellm ablate`: the paper's ablations (Tables 3, 4, 6, Figure 4 and the appendix's) on the
synthetic benchmark.

    capellm ablate [--study instruction|rounds|encoder|backbone|names|questions|step-by-step|
                    projector|keypoint-token|pretrained-llm|all] [--steps N]
"""

from __future__ import annotations

import argparse


def main(argv=None) -> int:
    from capellm.ablate import NAMES_STUDY, STUDIES, run_studies

    p = argparse.ArgumentParser(prog="capellm ablate", description="The paper's ablations (Tables 3, 4, 6, "
                                                                   "Figure 4) on the synthetic benchmark.")
    p.add_argument("--study", choices=(*STUDIES, NAMES_STUDY, "all"), default="all")
    p.add_argument("--data", default="data/synth")
    p.add_argument("--out", default="runs/ablations")
    p.add_argument("--split", type=int, default=1, choices=range(1, 6))
    p.add_argument("--steps", type=int, default=None, help="optimiser steps per variant (default: the demo's)")
    p.add_argument("--pretrain-steps", type=int, default=None,
                   help="encoder pre-training steps per variant (default: the demo's)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    # "all": the studies of the demo's LLM; the pretrained LLM's is asked for by name
    studies = [*(k for k in STUDIES if k != "pretrained-llm"), NAMES_STUDY] if args.study == "all" else [args.study]
    print(run_studies(studies, args.data, args.out, args.split, args.steps, args.pretrain_steps, args.seed))
    return 0
