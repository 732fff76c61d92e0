"""Training-step speed of the demo preset: the earlier path and today's, side by side in one run.

Both paths train the same model on the same sample order of the synthetic benchmark (split 1), in
one process, interleaved (A B A B ...) so that a change in machine load hits them alike:

  before   what `capellm train` did before: the single-tensor AdamW torch picks by itself on the
           CPU, every training image decoded again for every sample (no image cache), float32,
           every sample cropped and encoded afresh, turn markers and the fixed strings around
           answers spelt in several BPE tokens.
  after    what it does now: fused AdamW, decoded images cached (data.image_cache_mb), the
           precision `train.mixed_precision` gives (float32 unless --precision says otherwise;
           bf16 on the CPU also runs attention as matrix products), one token per turn marker
           and per fixed string around an answer with the digit next to it
           (model.llm.fuse_fixed_tokens), and the frozen encoder's features of the preset's
           `train.frozen_features` pool, built once before the timed steps (its time is printed
           apart).

Each path is timed over --steps optimiser steps after --warmup steps, data loading included
(the loop of capellm.train: sample -> crop or pool -> collate -> forward -> backward -> clip ->
step). Prints steps/s and samples/s for each and the ratio after / before.

    python benchmarks/train_step.py                      # float32 both (docs/performance.md)
    python benchmarks/train_step.py --precision bf16     # after: bf16 autocast on the CPU
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import time
from unittest import mock

import torch


def build(args, fast: bool) -> tuple[list, float]:
    """The state `run_steps` trains (config, accelerator, model, data set, optimiser, precision,
    the epoch's batches, the position in them) of one path, and the seconds its feature pool took."""
    from dataclasses import replace

    from capellm.data.images import ImageCache
    from capellm.demo import demo_config
    from capellm.data.instructions import PromptFormat
    from capellm.train import build_training, epoch_batches, frozen_features, make_accelerator

    cfg = demo_config(args.data, "/tmp/capellm_bench_train_step", steps=args.warmup + args.steps)
    if args.mlp:
        cfg.model.llm.random_config = {**cfg.model.llm.random_config, "intermediate_size": args.mlp}
    if args.question:
        cfg.model.instruction = replace(cfg.model.instruction, question=args.question)
    cfg.train.encoder_pretrain = replace(cfg.train.encoder_pretrain, steps=0)
    cfg.train.mixed_precision = "no"     # one accelerate state per process: autocast is ours below
    cfg.model.llm.fuse_fixed_tokens = fast and cfg.model.llm.fuse_fixed_tokens
    acc = make_accelerator(cfg)
    torch.manual_seed(0)
    # before: the format's turn markers are not tokens of their own
    markers = contextlib.nullcontext() if fast else mock.patch.object(PromptFormat, "markers", lambda self: ())
    with markers:
        model, ds, opt, sched, _, _ = build_training(cfg, acc)
    pool_s = 0.0
    if not fast:
        ds.image = ImageCache(0)
        opt = torch.optim.AdamW(model.param_groups(cfg.train.lr, cfg.train.weight_decay), lr=cfg.train.lr,
                                betas=cfg.train.betas, foreach=False)
    elif cfg.train.frozen_features:
        t0 = time.perf_counter()
        ds.frozen = frozen_features(cfg, model.vision, ds, torch.device("cpu"), args.precision)
        pool_s = time.perf_counter() - t0
    batches = epoch_batches(len(ds), cfg, 0, 0, 1)
    return [cfg, acc, model, ds, opt, args.precision if fast else "no", batches, [0]], pool_s


def run_steps(state, n: int) -> float:
    from capellm.data.dataset import collate
    from capellm.inference.attention import training_attention

    cfg, acc, model, ds, opt, precision, batches, pos = state
    attention = training_attention(model, torch.device("cpu"), precision)
    model.train()
    t0 = time.perf_counter()
    for _ in range(n):
        idx = batches[pos[0] % len(batches)]
        pos[0] += 1
        batch = collate([ds[i] for i in idx], model.tokenizer.pad_token_id)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"), attention:
            out = model(batch)
        out["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.clip_grad)
        opt.step()
        opt.zero_grad(set_to_none=True)
    return time.perf_counter() - t0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="data/synth", help="the synthetic benchmark (generated if missing)")
    p.add_argument("--steps", type=int, default=60, help="timed steps per path and round")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--rounds", type=int, default=3, help="A B rounds")
    p.add_argument("--precision", default="no", choices=("no", "bf16"), help="today's path: float32 or bf16")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--question", default="", help="another question template for both paths")
    p.add_argument("--mlp", type=int, default=0, help="another LLM MLP width for both paths")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    from capellm import synth

    if not synth.is_complete(args.data):
        synth.generate(args.data, seed=0)
    states, pool_s = {}, 0.0
    for name, fast in (("before", False), ("after", True)):
        states[name], pool_s = build(args, fast)
        run_steps(states[name], args.warmup)
    times = {k: 0.0 for k in states}
    for _ in range(args.rounds):
        for name in states:
            times[name] += run_steps(states[name], args.steps)
    n = args.rounds * args.steps
    batch = states["after"][0].train.batch_size
    print(f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}; "
          f"demo preset, batch {batch}, {n} steps per path ({args.rounds} interleaved rounds)")
    for name, t in times.items():
        print(f"  {name:<7} {1000 * t / n:7.1f} ms/step  {n / t:6.2f} steps/s  {n * batch / t:7.1f} samples/s")
    print(f"  ratio after/before (speed): {times['before'] / times['after']:.2f}x")
    if pool_s:
        print(f"  after: frozen-feature pool of {states['after'][0].train.frozen_features} crops per instance "
              f"built once in {pool_s:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
