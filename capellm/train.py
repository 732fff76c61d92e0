"""The training loop: AdamW, warm-up then cosine, gradient accumulation, clipping (Sec. 4.1).

The loop itself fits on one screen (`train`); set-up, checkpoints and logging live in helpers.
Several GPUs (or CPU processes) work through accelerate: `accelerate launch -m capellm.cli train`.
Each process takes every world_size-th batch of the epoch's order; gradients are averaged by DDP.

Resume is exact. The data order, grouping and augmentation are pure functions of (seed, epoch,
index) (capellm.data.dataset), so the loop state is just (epoch, batch, step) plus the optimizer,
scheduler and RNG states, all in each checkpoint (capellm.checkpoint; JSON and safetensors only).

The run folder is guarded (`prepare_run_folder`): one run writes into it at a time (a lock); a
folder holding an earlier run is continued only with `resume`, replaced only with `overwrite`;
a resumed run must have the configuration it was started with, except for the fields of
`RESUME_MAY_CHANGE`; and a loss that stops being finite ends the run before anything of that
step is saved.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from tqdm import tqdm

from capellm import checkpoint as ckpt
from capellm.config import ConfigError, RunConfig, from_dict, to_dict
from capellm.data.coco import load_keypoint_dataset
from capellm.data.dataset import InstructionDataset, categories_for, collate, encode_crops, epoch_order, make_crops
from capellm.data.images import ImageCache
from capellm.errors import CheckpointError, TrainingError
from capellm.inference.attention import training_attention
from capellm.data.instructions import instruction_corpus, tokenizer_markers
from capellm.model.capellm import CapeLLM
from capellm.model.language_model import build_tokenizer
from capellm.pretrain import pretrain_encoder
from capellm.utils import atomic_write_bytes, atomic_write_text, seed_everything

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


def cpu_has_bf16() -> bool:
    """Whether this CPU multiplies bf16 matrices in hardware (AVX-512 BF16 or AMX)."""
    cpu = getattr(torch, "cpu", None)
    try:
        return bool(cpu._is_avx512_bf16_supported() or cpu._is_amx_tile_supported())
    except AttributeError:
        return False


def resolve_mixed_precision(setting: str, force_cpu: bool = False) -> str:
    """"auto": bf16 on CUDA, and on CPUs with bf16 matrix units (the demo: 1.2x faster steps and
    PCK@0.2 57.48 against 57.55 in float32 from the same seed, docs/performance.md); else float32."""
    if setting != "auto":
        return setting
    if torch.cuda.is_available() and not force_cpu:
        return "bf16"
    return "bf16" if cpu_has_bf16() else "no"


def make_accelerator(cfg: RunConfig):
    from accelerate import Accelerator

    mp = resolve_mixed_precision(cfg.train.mixed_precision, cfg.train.cpu)
    report = cfg.train.report_to
    trackers = {} if report == "none" else {"log_with": report, "project_dir": cfg.train.out_dir}
    return Accelerator(cpu=cfg.train.cpu, mixed_precision=mp, **trackers)


def tracker_config(cfg: RunConfig) -> dict:
    """The run's config as the flat scalar mapping trackers store (lists and dicts as text)."""
    return {k: v if isinstance(v, (int, float, str, bool)) else json.dumps(v) for k, v in _flat(to_dict(cfg)).items()}


def build_training(cfg: RunConfig, accelerator):
    """Model, data set, optimiser and scheduler for `cfg` (identical on every process)."""
    data = load_keypoint_dataset(cfg.data.train_file, cfg.data.image_root or None,
                                 allow_outside_root=cfg.data.allow_outside_root)
    if cfg.data.only_present:
        from capellm.data.mp100 import filter_present

        data, report = filter_present(data)
        log.info("data.only_present: training on %d of %d instances (dropped: %s)", report["kept"],
                 report["instances"], report["dropped"])
    else:
        from capellm.data.mp100 import require_images

        require_images(data)           # a missing image fails now, not at the step that reaches it
    cats = categories_for(data, cfg.data.categories, cfg.data.match_keypoint_names)
    if cfg.data.val_file:              # and the validation file's, before hours of training
        from capellm.data.mp100 import require_images

        val = load_keypoint_dataset(cfg.data.val_file, cfg.data.image_root or None,
                                    allow_outside_root=cfg.data.allow_outside_root)
        categories_for(val, cfg.data.categories, cfg.data.match_keypoint_names)
        require_images(val)
    tokenizer = None
    if cfg.model.llm.tokenizer.startswith("bpe:"):
        corpus = instruction_corpus(list(cats.values()), cfg.model.instruction)
        if cfg.train.projector_pretrain.steps:
            from capellm.projector_pretrain import qa_corpus

            corpus += qa_corpus(list(cats.values()))
        markers = tokenizer_markers(cfg.model.llm, cfg.model.instruction.decimals)
        tokenizer = build_tokenizer(cfg.model.llm, corpus, markers)
    seed_everything(cfg.train.seed)
    model = CapeLLM(cfg.model, tokenizer=tokenizer)
    ds = InstructionDataset(data.instances, cats, cfg.model.crop, cfg.model.instruction, model.fmt,
                            model.segment_tokenizer, seed=cfg.train.seed, augment=True,
                            image_cache=ImageCache(cfg.data.image_cache_mb))
    if len(ds) == 0:
        raise ValueError(f"{cfg.data.train_file}: no instance has a labelled keypoint inside its crop; "
                         f"nothing to train on")
    t = cfg.train
    world = accelerator.num_processes
    batches_per_epoch = math.ceil(len(ds) / (t.batch_size * world))
    steps_per_epoch = math.ceil(batches_per_epoch / t.grad_accum)
    total = t.max_steps if t.max_steps > 0 else t.epochs * steps_per_epoch
    opt = make_optimizer(model.param_groups(t.lr, t.weight_decay), t)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(total, t.warmup_ratio, t.schedule))
    return model, ds, opt, sched, batches_per_epoch, total


def make_optimizer(groups: list[dict], t) -> torch.optim.Optimizer:
    """AdamW; the fused implementation wherever the parameters allow it (float tensors on the CPU
    or CUDA). torch picks the single-tensor loop by itself on the CPU, which the fused one runs
    4x faster (measured: 60 tensors of a 128-wide model, 4.0 against 1.0 ms a step)."""
    params = [p for g in groups for p in g["params"]]
    fused = bool(params) and all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    return torch.optim.AdamW(groups, lr=t.lr, betas=t.betas, fused=fused or None)


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
    ckpt.save_rng(tmp / f"rng_rank{accelerator.process_index}.json")
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        accelerator.unwrap_model(model).save_pretrained(tmp)
        ckpt.save_trainer_state(tmp, opt, sched, vars(state).copy(), accelerator.num_processes)
        tmp.rename(final)
        ckpt.prune(out, cfg.train.keep_last)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(path: Path, accelerator, model, opt, sched) -> LoopState:
    from safetensors.torch import load_file

    from capellm.model.capellm import WEIGHTS_FILE

    optimizer, scheduler, loop, world = ckpt.load_trainer_state(path)
    if world != accelerator.num_processes:
        raise CheckpointError(f"{path}: saved with {world} processes, resuming with "
                              f"{accelerator.num_processes}; exact resume needs the same number")
    accelerator.unwrap_model(model).load_trained_state_dict(load_file(str(path / WEIGHTS_FILE)), str(path))
    opt.load_state_dict(optimizer)
    sched.load_state_dict(scheduler)
    ckpt.set_rng_state(ckpt.load_rng(path / f"rng_rank{accelerator.process_index}.json"))
    return LoopState(**loop)


# what a resumed run may change: how it logs, saves and loads, and how long it trains (the
# schedule then runs to the new end), not what it computes
RESUME_MAY_CHANGE = ("train.log_every", "train.save_every", "train.keep_last", "train.num_workers",
                     "train.out_dir", "train.max_steps", "train.epochs", "data.image_root", "data.image_cache_mb",
                     "data.val_file", "data.test_file")


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and k != "random_config":
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def config_changes(old: dict, new: dict) -> list[str]:
    """'field: old -> new' for every field a resumed run may not change."""
    a, b = _flat(old), _flat(new)
    return [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b))
            if a.get(k) != b.get(k) and not k.startswith("eval.") and k not in RESUME_MAY_CHANGE]


def prepare_run_folder(cfg: RunConfig, resume: bool, overwrite: bool) -> None:
    """Refuse to mix runs in train.out_dir (module docstring); then write run_config.yaml."""
    out = Path(cfg.train.out_dir)
    config_file = out / "run_config.yaml"
    earlier = [p.name for p in (config_file, out / "checkpoints", out / "model") if p.exists()]
    if earlier and overwrite:
        for name in ("checkpoints", "model", "model.tmp", "model.old"):
            shutil.rmtree(out / name, ignore_errors=True)
        for name in ("run_config.yaml", "train.log"):
            (out / name).unlink(missing_ok=True)
    elif earlier and not resume:
        raise TrainingError(f"{out}: holds an earlier run ({', '.join(earlier)}); continue it with --resume, "
                            f"replace it with --overwrite, or choose another train.out_dir")
    elif earlier and config_file.exists():
        try:
            old = yaml.safe_load(config_file.read_text())
            old = to_dict(from_dict(RunConfig, old or {}))       # fields added since then: their defaults
        except (yaml.YAMLError, ConfigError) as e:
            raise TrainingError(f"{config_file}: cannot read the run's configuration ({e})") from None
        changes = config_changes(old, to_dict(cfg))
        if changes:
            raise TrainingError(f"{config_file}: --resume continues the run as it was configured, but "
                                f"{len(changes)} field(s) differ: {'; '.join(changes[:6])}"
                                f"{' ...' if len(changes) > 6 else ''}; start a new run in another "
                                f"train.out_dir to change them")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(config_file, yaml.safe_dump(to_dict(cfg), sort_keys=False))


def _require_finite(loss: torch.Tensor, out: Path, step: int) -> None:
    """End the run before a non-finite loss reaches the weights (and so a checkpoint)."""
    if not torch.isfinite(loss.detach()):
        raise TrainingError(f"{out}: the loss is {float(loss.detach())} at step {step}; stopped before saving "
                            f"anything of it (last checkpoint: {ckpt.latest_checkpoint(out) or 'none'}); lower "
                            f"train.lr or train it in float32 (--train.mixed_precision no)")


def _log_line(cfg: RunConfig, record: dict) -> None:
    with open(Path(cfg.train.out_dir) / "train.log", "a") as f:
        f.write(json.dumps(record) + "\n")


def train(cfg: RunConfig, resume: bool = False, stop_after_steps: int | None = None,
          overwrite: bool = False, evaluate_val: bool = True) -> Path:
    """Train; returns the folder of the final model. resume: continue the run in train.out_dir
    (or start one there); overwrite: replace the run there; evaluate_val: score data.val_file at
    the end (metrics_val.json, and the tracker of train.report_to). `stop_after_steps` ends the
    process early (after saving) to simulate an interruption in tests."""
    out = Path(cfg.train.out_dir)
    if out.exists() and not out.is_dir():
        raise TrainingError(f"{out}: train.out_dir is a file, not a folder")
    accelerator = make_accelerator(cfg)
    lock = ckpt.RunLock(cfg.train.out_dir) if accelerator.is_main_process else contextlib.nullcontext()
    with lock:
        if accelerator.is_main_process:
            prepare_run_folder(cfg, resume, overwrite)
        accelerator.wait_for_everyone()
        return _train(cfg, accelerator, resume, stop_after_steps, evaluate_val)


def _train(cfg: RunConfig, accelerator, resume: bool, stop_after_steps: int | None, evaluate_val: bool) -> Path:
    out = Path(cfg.train.out_dir)
    model, ds, opt, sched, batches_per_epoch, total = build_training(cfg, accelerator)
    state = LoopState()
    last = ckpt.latest_checkpoint(out) if resume else None
    t = cfg.train
    pre = t.encoder_pretrain
    pool = None
    if last is None and pre.steps > 0:
        if shared_crops(cfg, len(ds.instances)):
            t0 = time.time()
            pool = make_crops(ds.instances, cfg.model.crop, t.frozen_features, t.seed, ds.image)
            if accelerator.is_main_process:
                _log_line(cfg, {"crop_pool": int(pool.pixels.shape[:2].numel()), "seconds": round(time.time() - t0, 1)})
        # every process runs the same seeded pre-training; DDP then broadcasts rank 0's weights
        stats = pretrain_encoder(model.vision, ds.instances, ds.categories, cfg.model.crop, pre.steps,
                                 pre.batch_size, pre.lr, pre.target, seed=t.seed, device=accelerator.device,
                                 image_cache=ds.image, precision=accelerator.mixed_precision, pool=pool)
        if accelerator.is_main_process:
            _log_line(cfg, {"encoder_pretrain_steps": pre.steps, "loss": stats["loss"][1],
                            "seconds": stats["seconds"]})
    if last is None and t.projector_pretrain.steps > 0:
        _projector_stage(cfg, model, ds, accelerator)
    if last is not None:
        state = load_checkpoint(last, accelerator, model, opt, sched)
        log.info("resumed from %s at step %d (epoch %d, batch %d)", last, state.step, state.epoch, state.batch)
    elif resume:
        log.info("no checkpoint in %s: starting from scratch", out)
    if t.frozen_features:
        t0 = time.time()
        ds.frozen = frozen_features(cfg, model.vision, ds, accelerator.device, accelerator.mixed_precision, pool)
        del pool
        if accelerator.is_main_process:
            _log_line(cfg, {"frozen_features": t.frozen_features, "crops": int(ds.frozen.features.shape[:2].numel()),
                            "seconds": round(time.time() - t0, 1)})
    model, opt = accelerator.prepare(model, opt)
    if t.report_to != "none":
        accelerator.init_trackers("capellm", config=tracker_config(cfg))
    bar = tqdm(total=total, initial=state.step, disable=not accelerator.is_main_process, desc="train",
               dynamic_ncols=True)
    t0, seen = time.time(), 0
    pad_id = accelerator.unwrap_model(model).tokenizer.pad_token_id
    attention = training_attention(accelerator.unwrap_model(model), accelerator.device, accelerator.mixed_precision)
    model.train()
    try:
        while state.step < total:
            ds.set_epoch(state.epoch)
            batches = epoch_batches(len(ds), cfg, state.epoch, accelerator.process_index, accelerator.num_processes)
            # own generator: creating a loader must not draw from the global RNG (exact resume)
            loader = torch.utils.data.DataLoader(ds, batch_sampler=batches[state.batch:],
                                                 num_workers=t.num_workers,
                                                 collate_fn=lambda items: collate(items, pad_id),
                                                 generator=torch.Generator().manual_seed(t.seed + state.epoch))
            for batch in loader:
                # micro-steps of the optimiser step this batch belongs to (the epoch's last may be short)
                group_start = (state.batch // t.grad_accum) * t.grad_accum
                group_size = min(t.grad_accum, batches_per_epoch - group_start)
                last_micro = state.batch - group_start == group_size - 1
                batch = {k: v.to(accelerator.device) for k, v in batch.items()}
                sync = accelerator.no_sync(model) if not last_micro else contextlib.nullcontext()
                with sync, accelerator.autocast(), attention:
                    outputs = model(batch)
                    _require_finite(outputs["loss"], out, state.step + 1)
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
                    record = {"step": state.step, "epoch": state.epoch, "loss": loss, "lr": lr,
                              "token_accuracy": float(outputs["token_accuracy"]), "samples_per_s": rate}
                    _log_line(cfg, record)
                    if t.report_to != "none":
                        accelerator.log({f"train/{k}": v for k, v in record.items() if k != "step"}, step=state.step)
                if state.step % t.save_every == 0 or state.step == total:
                    save_checkpoint(accelerator, model, opt, sched, state, cfg)
                if stop_after_steps is not None and state.step >= stop_after_steps:
                    return out
                if state.step >= total:
                    break
    finally:
        bar.close()                 # ends the bar's line: a message after it starts a line of its own
    final = out / "model"
    if accelerator.is_main_process:
        final = ckpt.publish_model(ckpt.latest_checkpoint(out), out)
        if evaluate_val and cfg.data.val_file:
            metrics = evaluate_validation(cfg, accelerator.unwrap_model(model), final)
            if t.report_to != "none":
                accelerator.log({f"val/{k}": v for k, v in metrics["overall"].items()}, step=state.step)
    accelerator.wait_for_everyone()
    if t.report_to != "none":
        accelerator.end_training()
    return final


SHARED_CROPS_MAX_BYTES = 1 << 30


def shared_crops(cfg: RunConfig, instances: int) -> bool:
    """Whether encoder pre-training draws from the frozen-feature pool's crops (made once for both,
    before pre-training) rather than cropping afresh: with a pool of augmented crops whose 8-bit
    pixels take at most SHARED_CROPS_MAX_BYTES (the demo's: 295 MB; at 224 px only small data sets)."""
    n, crop = cfg.train.frozen_features, cfg.model.crop
    return n > 0 and crop.augment and instances * (n + 1) * crop.input_size ** 2 * 3 <= SHARED_CROPS_MAX_BYTES


def frozen_features(cfg: RunConfig, vision, ds, device: torch.device, precision: str, pool=None):
    """The frozen encoder's features of train.frozen_features augmented crops per training
    instance and of its plain crop (capellm.data.dataset.encode_crops; `pool`: those crops, already
    made), computed once before the first step (again on resume: they are a pure function of the
    seed and the encoder). Kept in bf16 when training runs under bf16 autocast, whose linear layers
    take them in bf16 anyway."""
    was_training = vision.training
    vision.eval()
    attention = training_attention(vision, device, precision)

    def encode(pixels):
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"), attention:
            out = vision(pixels.to(device))
        return out.to(torch.bfloat16) if precision == "bf16" else out.float()

    try:
        return encode_crops(ds.instances, cfg.model.crop, cfg.train.frozen_features, cfg.train.seed, ds.image, encode,
                            pool=pool)
    finally:
        vision.train(was_training)


PROJECTOR_STAGE = "projector_stage.safetensors"     # in <out_dir>/checkpoints: the stage's result


def _projector_stage(cfg: RunConfig, model, ds, accelerator) -> None:
    """Projector pre-training before fine-tuning (capellm.projector_pretrain). Its result is kept
    in the run's checkpoints folder, so a run killed after the stage (before the first fine-tuning
    checkpoint) resumes without repeating it; killed during the stage, the stage runs again from
    its start (it is a pure function of the seed). Either way the global random state is then
    reset from the seed, so resumed and uninterrupted runs continue alike."""
    from safetensors.torch import load_file, save

    from capellm.projector_pretrain import pretrain_projector

    t, pp = cfg.train, cfg.train.projector_pretrain
    saved = Path(t.out_dir) / "checkpoints" / PROJECTOR_STAGE
    if saved.exists():
        model.projector.load_state_dict(load_file(str(saved), device=str(accelerator.device)))
        log.info("projector pre-training: loaded its result from %s", saved)
    else:
        stats = pretrain_projector(model, ds, pp.steps, pp.batch_size, pp.lr, pp.task, seed=t.seed,
                                   device=accelerator.device)
        if accelerator.is_main_process:
            saved.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(saved, save({k: v.detach().cpu().contiguous()
                                            for k, v in model.projector.state_dict().items()}))
            _log_line(cfg, {"projector_pretrain_steps": pp.steps, "task": pp.task, "loss": stats["loss"][1],
                            "seconds": stats["seconds"]})
        accelerator.wait_for_everyone()
    seed_everything(t.seed + 1)


def evaluate_validation(cfg: RunConfig, model, final: Path) -> dict:
    """PCK of the trained model on data.val_file (protocol 1), written to <out_dir>/metrics_val.json."""
    from capellm.evaluate import evaluate, write_report

    data = load_keypoint_dataset(cfg.data.val_file, cfg.data.image_root or None,
                                 allow_outside_root=cfg.data.allow_outside_root)
    cats = categories_for(data, cfg.data.categories, cfg.data.match_keypoint_names)
    model.eval()
    result = evaluate(model, data, cats, cfg.eval)
    out = Path(cfg.train.out_dir) / "metrics_val.json"
    log.info("validation (%s):\n%s", cfg.data.val_file, write_report(result, out, cfg.eval.thresholds))
    return result

