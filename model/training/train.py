"""StyleGAN2-ADA training, written for Atelier: the training loop.

Non-saturating logistic loss, lazy R1 on reals, optional path-length regularisation (model.training.loss), EMA
generator with ramp-up, style mixing, adaptive discriminator augmentation (model.training.augment), class
conditioning from dataset labels (model.training.data), float16 blocks on GPU, several processes through
``torchrun`` (model.training.distributed). Settings and their checks are in model.training.config.

A run folder holds ``log.jsonl``, sample grids, ``network-snapshot-KKKKKK.safetensors`` (G_ema, G, D) and a
matching ``training-state-KKKKKK.pt`` (model.training.snapshots). Resuming restores all of it, so a run continued
after a stop is the same run. Ctrl-C (or SIGTERM, as a session or job manager sends) finishes the current step and
writes a snapshot before the process ends, so a stop loses nothing.
"""
from __future__ import annotations

import copy
import sys
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Callable, TypeVar

import torch

from model.network.networks import Discriminator, Generator, use_cpu_bfloat16
from model.training.augment import PIPES, AdaController, AugmentPipe
from model.training.config import TrainConfig, check_channel_base, check_config
from model.training.data import DataInfo, next_batch, open_training_data
from model.training.distributed import (Distributed, StopRequest, barrier, process_device, signs_from_all_ranks,
                                        stop_agreed)
from model.training.loss import StyleGAN2Loss, lazy_ratio
from model.training.snapshots import (LogStats, SnapshotClock, TrainingState, finetune_from, load_training_state,
                                      log_entry, quality_probe, resumed_nimg, snapshot_paths, write_config,
                                      write_snapshot)

if TYPE_CHECKING:
    from tqdm import tqdm

Result = TypeVar("Result")


def train(cfg: TrainConfig, run_dir: Path, resume: Path | None = None, finetune: Path | None = None,
          progress: bool = True, on_log: Callable[[dict], None] | None = None,
          on_finish: Callable[[TrainingState], None] | None = None, announce: bool = False) -> Path:
    """Run (or continue) training until cfg.kimg; returns the newest snapshot path.

    `on_log` sees every log entry (rank 0); `on_finish` sees the final state on every rank (tests compare ranks);
    `announce` says on stderr when the training loop starts, and that Ctrl-C is safe from then on.
    """
    device, dist_info = process_device(cfg.device)
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    local_batch = check_config(cfg, dist_info.world)
    start_nimg = resumed_nimg(resume) if resume is not None else 0
    data, source = open_training_data(cfg, dist_info.rank, dist_info.world, start=start_nimg // dist_info.world)
    check_channel_base(cfg, data.resolution)
    state = build_state(cfg, data, device)
    ada_pending = _start_or_resume(state, cfg, dist_info, resume, finetune)
    if dist_info.rank == 0:
        write_config(run_dir, cfg)
    if device.type == "cpu" and cfg.cpu_bf16_res > 0:
        # G_ema stays float32: sample grids and exported snapshots render exactly as before.
        use_cpu_bfloat16(state.G, cfg.cpu_bf16_res)
        use_cpu_bfloat16(state.D, cfg.cpu_bf16_res)
    loss = StyleGAN2Loss.wrapping(cfg, state.G, state.D, state.augment, state.pl_mean, dist_info, device)
    ada = AdaController(state.augment, cfg.ada_target, cfg.ada_interval, cfg.ada_kimg) if cfg.augment == "ada" else None
    probe = quality_probe(cfg, data) if dist_info.rank == 0 and cfg.quality_samples > 0 else None
    if ada is not None:
        ada.restore(*ada_pending)
    if cfg.augment == "none":
        state.augment.p.zero_()

    total_nimg = int(cfg.kimg * 1000)
    clock, stats, newest = SnapshotClock(state.cur_nimg), LogStats(), None
    bar = _progress_bar(state, total_nimg) if progress and dist_info.rank == 0 else None
    with StopRequest() as stop:
        if announce and dist_info.rank == 0:
            print(f"training from {state.cur_nimg / 1000:g} to {cfg.kimg:g} kimg in {run_dir}; Ctrl-C writes a "
                  f"snapshot and stops", file=sys.stderr, flush=True)
        while state.cur_nimg < total_nimg:
            real, real_c = next_batch(source, local_batch, data.c_dim, device)
            gen_c = real_c[torch.randperm(local_batch, device=device)]
            stats.add(_optimise(state.G, state.D, state.opt_G, partial(loss.accumulate_generator, gen_c, state.step)))
            terms, real_logits = _optimise(state.D, state.G, state.opt_D,
                                           partial(loss.accumulate_discriminator, real, real_c, gen_c, state.step))
            stats.add(terms)
            if ada is not None:
                _adjust_augmentation(ada, real_logits, cfg, dist_info, stats)

            state.cur_nimg += cfg.batch
            state.step += 1
            accumulate_ema(state.G_ema, state.G, ema_beta(cfg, state.cur_nimg))
            if bar is not None:
                _show_progress(bar, state, stats, cfg)

            stopping = stop_agreed(stop, dist_info, device)
            if state.cur_nimg >= total_nimg or stopping or clock.due(state.cur_nimg, cfg):
                entry = log_entry(state, clock, stats, stopped=stopping and state.cur_nimg < total_nimg)
                if dist_info.rank == 0:
                    newest = write_snapshot(state, cfg, run_dir, entry, data.c_dim, ada, probe)
                    if on_log is not None:
                        on_log(entry)
                clock.restart(state.cur_nimg)
                if stopping:
                    break
        if bar is not None:
            bar.close()
    if on_finish is not None:
        on_finish(state)
    barrier(dist_info)
    return newest if newest is not None else snapshot_paths(run_dir)[-1][1]


def build_state(cfg: TrainConfig, data: DataInfo, device: torch.device) -> TrainingState:
    torch.manual_seed(cfg.seed)
    G = Generator(**cfg.generator_kwargs(data.resolution, data.c_dim)).train().to(device)
    D = Discriminator(**cfg.discriminator_kwargs(data.resolution, data.c_dim)).train().to(device)
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)
    augment = AugmentPipe(PIPES[cfg.augpipe]).to(device)
    augment.p.fill_(cfg.augment_p)
    # Lazy regularisation: scale lr and betas so the regularised optimiser matches the unregularised one.
    g_ratio = lazy_ratio(cfg.pl_interval, cfg.pl_weight > 0)
    d_ratio = lazy_ratio(cfg.r1_interval, cfg.gamma > 0)
    opt_G = torch.optim.Adam(G.parameters(), lr=cfg.glr * g_ratio, betas=(0.0, 0.99 ** g_ratio), eps=1e-8)
    opt_D = torch.optim.Adam(D.parameters(), lr=cfg.dlr * d_ratio, betas=(0.0, 0.99 ** d_ratio), eps=1e-8)
    return TrainingState(G=G, D=D, G_ema=G_ema, augment=augment, opt_G=opt_G, opt_D=opt_D,
                         pl_mean=torch.zeros([], device=device))


def _start_or_resume(state: TrainingState, cfg: TrainConfig, dist_info: Distributed, resume: Path | None,
                     finetune: Path | None) -> tuple[list[float], int]:
    """Load the snapshot to resume (or the weights to fine-tune from) and seed this rank's random draws; returns
    the ADA signs the snapshot had gathered but not yet acted on."""
    if resume is not None:
        ada_pending = load_training_state(state, resume)
        if dist_info.rank > 0:  # the saved RNG is rank 0's; other ranks branch off it deterministically
            torch.manual_seed(int(torch.randint(0, 2 ** 31, [])) + dist_info.rank)
        return ada_pending
    if finetune is not None:
        finetune_from(state, finetune)
    # Different ranks draw different latents and augmentations; weights start identical (same seed).
    torch.manual_seed(cfg.seed * 7919 + dist_info.rank)
    return [], 0


def _optimise(trained: torch.nn.Module, frozen: torch.nn.Module, opt: torch.optim.Optimizer,
              accumulate: Callable[[], Result]) -> Result:
    """One phase of a step: the loss accumulates gradients for `trained` only, then its optimiser steps."""
    trained.requires_grad_(True)
    frozen.requires_grad_(False)
    opt.zero_grad(set_to_none=True)
    result = accumulate()
    opt.step()
    return result


def _adjust_augmentation(ada: AdaController, real_logits: torch.Tensor, cfg: TrainConfig, dist_info: Distributed,
                         stats: LogStats) -> None:
    ada.record(signs_from_all_ranks(real_logits, dist_info))
    rt = ada.step(cfg.batch)
    if rt is not None:
        stats.add({"ada_rt": torch.tensor(rt)})  # logged as float32, as every other term


def ema_beta(cfg: TrainConfig, cur_nimg: int) -> float:
    """How much of G_ema to keep this step. Its half-life ramps up with the images seen: early on, follow G closely."""
    ema_nimg = cfg.ema_nimg()
    if cfg.ema_rampup is not None:
        ema_nimg = min(ema_nimg, cur_nimg * cfg.ema_rampup)
    return 0.5 ** (cfg.batch / max(ema_nimg, 1e-8))


def accumulate_ema(G_ema: Generator, G: Generator, beta: float) -> None:
    with torch.no_grad():
        for p_ema, p in zip(G_ema.parameters(), G.parameters()):
            p_ema.copy_(p.detach().lerp(p_ema, beta))
        for b_ema, b in zip(G_ema.buffers(), G.buffers()):
            b_ema.copy_(b)


def _progress_bar(state: TrainingState, total_nimg: int) -> tqdm:
    from tqdm import tqdm

    return tqdm(total=total_nimg / 1000, initial=state.cur_nimg / 1000, unit="kimg", dynamic_ncols=True,
                bar_format="{l_bar}{bar}| {n:.2f}/{total:.0f} kimg [{elapsed}<{remaining}] {postfix}")


def _show_progress(bar: tqdm, state: TrainingState, stats: LogStats, cfg: TrainConfig) -> None:
    bar.update(cfg.batch / 1000)
    if state.step % 10 == 0:
        bar.set_postfix_str(f"G {stats.last('loss_G'):.2f} D {stats.last('loss_D'):.2f} "
                            f"p {float(state.augment.p):.3f}")
