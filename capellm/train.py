"""The training loop: AdamW, warm-up then cosine, gradient accumulation, clipping (Sec. 4.1).

The loop itself fits on one screen (`train`); set-up, checkpoints and logging live in helpers.
Several GPUs (or CPU processes) work through accelerate: `accelerate launch -m capellm.cli train`.
Each process takes every world_size-th batch of the epoch's order; gradients are averaged by DDP.

Resume is exact. The data order, grouping and augmentation are pure functions of (seed, epoch,
index) (capellm.data.dataset), so the loop state is just (epoch, batch, step) plus the optimizer,
scheduler and RNG states, all in each checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from tqdm import tqdm

from capellm import checkpoint as ckpt
from capellm.config import RunConfig, to_dict
from capellm.data.coco import load_keypoint_dataset
from capellm.data.dataset import InstructionDataset, categories_for, collate, epoch_order
from capellm.data.instructions import instruction_corpus
from capellm.model.capellm import CapeLLM
from capellm.model.language_model import build_tokenizer
from capellm.pretrain import pretrain_encoder
from capellm.utils import atomic_write_text, seed_everything

log = logging.getLogger("capellm.train")


@dataclass
class LoopState:
    epoch: int = 0   # current epoch
    batch: int = 0   # micro-batches of this epoch already done (by this process)
    step: int = 0    # optimiser steps done


def lr_lambda(total_steps: int, warmup_ratio: float, schedule: str):
    warmup = max(1, math.ceil(total_steps * warmup_ratio)) if warmup_ratio > 0 else 0

    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if schedule == "constant":
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        if schedule == "linear":
            return 1.0 - progress
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return f


def make_accelerator(cfg: RunConfig):
    from accelerate import Accelerator

    mp = cfg.train.mixed_precision
    if mp == "auto":
        mp = "bf16" if torch.cuda.is_available() and not cfg.train.cpu else "no"
    return Accelerator(cpu=cfg.train.cpu, mixed_precision=mp)


def build_training(cfg: RunConfig, accelerator):
    """Model, data set, optimiser and scheduler for `cfg` (identical on every process)."""
    data = load_keypoint_dataset(cfg.data.train_file, cfg.data.image_root or None)
    if cfg.data.only_present:
        from capellm.data.mp100 import filter_present

        data, report = filter_present(data)
        log.info("data.only_present: training on %d of %d instances (dropped: %s)", report["kept"],
                 report["instances"], report["dropped"])
    cats = categories_for(data, cfg.data.categories)
    tokenizer = None
    if cfg.model.llm.tokenizer.startswith("bpe:"):
        tokenizer = build_tokenizer(cfg.model.llm, instruction_corpus(list(cats.values()), cfg.model.instruction))
    seed_everything(cfg.train.seed)
    model = CapeLLM(cfg.model, tokenizer=tokenizer)
    ds = InstructionDataset(data.instances, cats, cfg.model.crop, cfg.model.instruction, model.fmt,
                            model.segment_tokenizer, seed=cfg.train.seed, augment=True)
    if len(ds) == 0:
        raise ValueError(f"{cfg.data.train_file}: no instance has a labelled keypoint inside its crop; "
                         f"nothing to train on")
    t = cfg.train
    world = accelerator.num_processes
    batches_per_epoch = math.ceil(len(ds) / (t.batch_size * world))
    steps_per_epoch = math.ceil(batches_per_epoch / t.grad_accum)
    total = t.max_steps if t.max_steps > 0 else t.epochs * steps_per_epoch
    opt = torch.optim.AdamW(model.param_groups(t.lr, t.weight_decay), lr=t.lr, betas=t.betas)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(total, t.warmup_ratio, t.schedule))
    return model, ds, opt, sched, batches_per_epoch, total


def epoch_batches(n: int, cfg: RunConfig, epoch: int, rank: int, world: int) -> list[list[int]]:
    """This process's micro-batches of an epoch: the epoch order cut into batches of world*B,
    of which each process takes its slice (the tail wraps around so all processes step together)."""
    order = epoch_order(n, cfg.train.seed, epoch)
    b = cfg.train.batch_size
    per = b * world
    n_batches = math.ceil(n / per)
    order = order + order[: n_batches * per - n]
    return [order[i * per + rank * b: i * per + (rank + 1) * b] for i in range(n_batches)]


def save_checkpoint(accelerator, model, opt, sched, state: LoopState, cfg: RunConfig) -> Path:
    out = cfg.train.out_dir
    tmp, final = ckpt.tmp_dir_for(out, state.step), ckpt.final_dir_for(out, state.step)
    if accelerator.is_main_process:
        ckpt.clean_partial(out)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    torch.save(ckpt.rng_state(), tmp / f"rng_rank{accelerator.process_index}.pt")
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        accelerator.unwrap_model(model).save_pretrained(tmp)
        torch.save({"optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                    "loop": vars(state).copy(), "world_size": accelerator.num_processes}, tmp / "trainer_state.pt")
        tmp.rename(final)
        ckpt.prune(out, cfg.train.keep_last)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(path: Path, accelerator, model, opt, sched) -> LoopState:
    from safetensors.torch import load_file

    from capellm.model.capellm import WEIGHTS_FILE

    st = torch.load(path / "trainer_state.pt", weights_only=False)
    if st["world_size"] != accelerator.num_processes:
        raise RuntimeError(f"{path}: saved with {st['world_size']} processes, resuming with "
                           f"{accelerator.num_processes}; exact resume needs the same number")
    accelerator.unwrap_model(model).load_trained_state_dict(load_file(str(path / WEIGHTS_FILE)), str(path))
    opt.load_state_dict(st["optimizer"])
    sched.load_state_dict(st["scheduler"])
    ckpt.set_rng_state(torch.load(path / f"rng_rank{accelerator.process_index}.pt", weights_only=False))
    return LoopState(**st["loop"])


def _log_line(cfg: RunConfig, record: dict) -> None:
    with open(Path(cfg.train.out_dir) / "train.log", "a") as f:
        f.write(json.dumps(record) + "\n")


def train(cfg: RunConfig, resume: bool = False, stop_after_steps: int | None = None) -> Path:
    """Train; returns the folder of the final model. `stop_after_steps` ends the process early
    (after saving) to simulate an interruption in tests."""
    accelerator = make_accelerator(cfg)
    out = Path(cfg.train.out_dir)
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "run_config.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False))
    model, ds, opt, sched, batches_per_epoch, total = build_training(cfg, accelerator)
    state = LoopState()
    last = ckpt.latest_checkpoint(out) if resume else None
    t = cfg.train
    pre = t.encoder_pretrain
    if last is None and pre.steps > 0:
        # every process runs the same seeded pre-training; DDP then broadcasts rank 0's weights
        stats = pretrain_encoder(model.vision, ds.instances, ds.categories, cfg.model.crop, pre.steps,
                                 pre.batch_size, pre.lr, pre.target, seed=t.seed, device=accelerator.device)
        if accelerator.is_main_process:
            _log_line(cfg, {"encoder_pretrain_steps": pre.steps, "loss": stats["loss"][1],
                            "seconds": stats["seconds"]})
    if last is not None:
        state = load_checkpoint(last, accelerator, model, opt, sched)
        log.info("resumed from %s at step %d (epoch %d, batch %d)", last, state.step, state.epoch, state.batch)
    elif resume:
        log.info("no checkpoint in %s: starting from scratch", out)
    model, opt = accelerator.prepare(model, opt)
    bar = tqdm(total=total, initial=state.step, disable=not accelerator.is_main_process, desc="train",
               dynamic_ncols=True)
    t0, seen = time.time(), 0
    pad_id = accelerator.unwrap_model(model).tokenizer.pad_token_id
    model.train()
    while state.step < total:
        ds.set_epoch(state.epoch)
        batches = epoch_batches(len(ds), cfg, state.epoch, accelerator.process_index, accelerator.num_processes)
        # own generator: creating a loader must not draw from the global RNG (exact resume)
        loader = torch.utils.data.DataLoader(ds, batch_sampler=batches[state.batch:], num_workers=t.num_workers,
                                             collate_fn=lambda items: collate(items, pad_id),
                                             generator=torch.Generator().manual_seed(t.seed + state.epoch))
        for batch in loader:
            # micro-steps of the optimiser step this batch belongs to (the epoch's last may be short)
            group_start = (state.batch // t.grad_accum) * t.grad_accum
            group_size = min(t.grad_accum, batches_per_epoch - group_start)
            last_micro = state.batch - group_start == group_size - 1
            batch = {k: v.to(accelerator.device) for k, v in batch.items()}
            with accelerator.no_sync(model) if not last_micro else contextlib.nullcontext(), accelerator.autocast():
                outputs = model(batch)
                accelerator.backward(outputs["loss"] / group_size)
            state.batch += 1
            seen += len(batch["input_ids"]) * accelerator.num_processes
            if not last_micro:
                continue
            if t.clip_grad > 0:
                accelerator.clip_grad_norm_(model.parameters(), t.clip_grad)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            state.step += 1
            if state.batch >= batches_per_epoch:
                state.epoch, state.batch = state.epoch + 1, 0
            loss = float(outputs["loss"].detach())
            lr = sched.get_last_lr()[-1]
            rate = seen / max(time.time() - t0, 1e-9)
            bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", samples_s=f"{rate:.1f}")
            bar.update(1)
            if accelerator.is_main_process and (state.step % t.log_every == 0 or state.step == total):
                _log_line(cfg, {"step": state.step, "epoch": state.epoch, "loss": loss, "lr": lr,
                                "token_accuracy": float(outputs["token_accuracy"]), "samples_per_s": rate})
            if state.step % t.save_every == 0 or state.step == total:
                save_checkpoint(accelerator, model, opt, sched, state, cfg)
            if stop_after_steps is not None and state.step >= stop_after_steps:
                bar.close()
                return out
            if state.step >= total:
                break
    bar.close()
    final = out / "model"
    if accelerator.is_main_process:
        final = ckpt.publish_model(ckpt.latest_checkpoint(out), out)
    accelerator.wait_for_everyone()
    return final

