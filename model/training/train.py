"""StyleGAN2-ADA training, written for Atelier.

Non-saturating logistic loss, lazy R1 on reals, optional path-length regularisation, EMA generator with ramp-up,
style mixing, adaptive discriminator augmentation, class conditioning from dataset labels, float16 blocks on GPU,
several processes through ``torchrun`` (DistributedDataParallel, gloo on CPU / nccl on GPU).

A run folder holds ``log.jsonl``, sample grids, ``network-snapshot-KKKKKK.safetensors`` (G_ema, G, D) and a
matching ``training-state-KKKKKK.pt`` (optimisers, augmentation p, counters, RNG). Resuming restores all of it,
so a run continued after a stop is the same run. Ctrl-C (or SIGTERM, as a session or job manager sends) finishes the
current step and writes a snapshot before the process ends, so a stop loses nothing.
"""
from __future__ import annotations

import copy
import dataclasses
import io
import json
import math
import os
import random
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from model.training.augment import PIPES, AdaController, AugmentPipe
from model.network.checkpoint import load_network, save_safetensors
from core.errors import AtelierError
from core.files import atomic_write_bytes
from model.network.networks import Discriminator, Generator, use_cpu_bfloat16
from model.network.render import image_grid, save_png, to_uint8
from model.training.runs import SNAPSHOT as SNAPSHOT_RE

SYNTHETIC = "synthetic"


@dataclass
class TrainConfig:
    data: str = SYNTHETIC            # a dataset zip/folder, or "synthetic" for the endless runway stream
    resolution: int = 64             # used for the synthetic stream; a dataset decides its own
    conditional: bool = False        # use dataset class labels (garment kind for the synthetic stream)
    batch: int = 16
    z_dim: int = 512
    w_dim: int = 512
    map_layers: int = 2
    channel_base: int = 4096
    channel_max: int = 64
    num_fp16_res: int = 0
    cpu_bf16_res: int = 0             # on a CPU, the N highest resolutions of G and D train in bfloat16
    conv_clamp: float | None = 256
    mbstd_group: int = 4
    mbstd_channels: int = 1          # D's minibatch-std features (each over its own group of channels)
    glr: float = 0.0025
    dlr: float = 0.0025
    gamma: float = 0.05              # R1 weight; small images need little
    r1_interval: int = 16
    pl_weight: float = 0.0           # path-length regularisation (0 = off, 2 = the paper's value)
    pl_interval: int = 4
    style_mixing: float = 0.9
    ema_kimg: float | None = None    # default: batch * 10 / 32
    ema_rampup: float | None = 0.05
    augment: str = "ada"             # ada | fixed | none
    augment_p: float = 0.0           # initial (ada) or constant (fixed) p
    augpipe: str = "bgc"             # which transformations (model.training.augment.PIPES)
    ada_target: float = 0.6
    ada_interval: int = 4
    ada_kimg: float = 100.0          # how fast p may move: 0 -> 1 in this many kimg
    kimg: float = 1000.0             # stop after this many thousand real images shown to D
    snap_kimg: float = 4.0           # snapshot every this many kimg ...
    snap_minutes: float = 5.0        # ... or every this many minutes, whichever comes first
    keep_snapshots: int = 3
    quality_samples: int = 1000      # images per snapshot for the Fréchet distance that picks the best (0 = off)
    seed: int = 0
    device: str = "auto"
    threads: int = 0                 # CPU threads (0 = torch default)
    grid_seeds: tuple[int, ...] = tuple(range(64))

    def ema_nimg(self) -> float:
        return (self.ema_kimg if self.ema_kimg is not None else self.batch * 10 / 32) * 1000

    def generator_kwargs(self, resolution: int, c_dim: int) -> dict:
        return dict(z_dim=self.z_dim, c_dim=c_dim, w_dim=self.w_dim, img_resolution=resolution, img_channels=3,
                    mapping_kwargs=dict(num_layers=self.map_layers),
                    synthesis_kwargs=dict(channel_base=self.channel_base, channel_max=self.channel_max,
                                          num_fp16_res=self.num_fp16_res, conv_clamp=self.conv_clamp))

    def discriminator_kwargs(self, resolution: int, c_dim: int) -> dict:
        return dict(c_dim=c_dim, img_resolution=resolution, img_channels=3, channel_base=self.channel_base,
                    channel_max=self.channel_max, num_fp16_res=self.num_fp16_res, conv_clamp=self.conv_clamp,
                    epilogue_kwargs=self._epilogue_kwargs())

    def _epilogue_kwargs(self) -> dict:
        kwargs = dict(mbstd_group_size=self.mbstd_group)
        if self.mbstd_channels != 1:  # left out at the default so runs from before the option still resume
            kwargs["mbstd_num_channels"] = self.mbstd_channels
        return kwargs


# ----------------------------------------------------------------------------------------------------------------
# Data


@dataclass
class DataInfo:
    resolution: int
    c_dim: int
    num_images: int | None  # None for an endless stream


def open_training_data(cfg: TrainConfig, rank: int, world: int, start: int = 0
                       ) -> tuple[DataInfo, Iterator[tuple[np.ndarray, int]]]:
    """An endless iterator of (uint8 HWC image, class index) for this process, and what the data looks like.

    `start` is how many images this process has already consumed: a resumed run continues the same sequence.
    """
    if cfg.data == SYNTHETIC:
        from scrape.synth import RunwayFactors, SyntheticRunwayStream
        stream = SyntheticRunwayStream(resolution=cfg.resolution, seed0=1_000_000 + cfg.seed, rank=rank,
                                       world_size=world, start=start,
                                       conditional_on="garment" if cfg.conditional else None)
        c_dim = len(RunwayFactors.GARMENTS) if cfg.conditional else 0

        def synthetic() -> Iterator[tuple[np.ndarray, int]]:
            for image, label in stream:
                yield image.numpy().transpose(1, 2, 0), max(int(label), 0)
        return DataInfo(cfg.resolution, c_dim, None), synthetic()
    from scrape.dataset import open_dataset, validate_dataset
    info = validate_dataset(cfg.data)
    if info.channels != 3:
        raise AtelierError(f"{cfg.data} has {info.channels}-channel images; Atelier trains on RGB. Prepare the "
                           f"dataset again with `atelier prepare` (it always writes RGB).")
    if cfg.conditional and not info.labels:
        raise AtelierError(f"{cfg.data} has no class labels in dataset.json, so it cannot train a conditional "
                           f"model. Drop --cond, or prepare the dataset with --label-field.")
    c_dim = info.num_classes if cfg.conditional else 0
    items = list(open_dataset(cfg.data))
    if not items:
        raise AtelierError(f"{cfg.data} holds no images; prepare a dataset first (atelier prepare).")

    def shuffled() -> Iterator[tuple[np.ndarray, int]]:
        epoch, offset = divmod(start, len(items))
        while True:
            # Each epoch's order and flips depend only on (seed, rank, epoch), so any position can be resumed.
            rng = np.random.default_rng([cfg.seed, rank, epoch])
            order, flips = rng.permutation(len(items)), rng.random(len(items)) < 0.5
            for pos in range(offset, len(items)):
                _, image, label = items[order[pos]]
                if flips[pos]:  # x-flip doubles a small archive; runway looks are left-right symmetric
                    image = image[:, ::-1]
                yield image, int(label) if label is not None else 0
            epoch, offset = epoch + 1, 0
    return DataInfo(info.resolution, c_dim, info.num_images), shuffled()


def next_batch(source: Iterator[tuple[np.ndarray, int]], batch: int, c_dim: int,
               device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = zip(*(next(source) for _ in range(batch)))
    x = torch.from_numpy(np.stack(images).transpose(0, 3, 1, 2).copy()).to(device).float() / 127.5 - 1
    c = torch.zeros([batch, c_dim], device=device)
    if c_dim:
        c[torch.arange(batch), torch.as_tensor(labels, device=device)] = 1
    return x, c


# ----------------------------------------------------------------------------------------------------------------
# State


@dataclass
class TrainingState:
    G: Generator
    D: Discriminator
    G_ema: Generator
    augment: AugmentPipe
    opt_G: torch.optim.Optimizer
    opt_D: torch.optim.Optimizer
    cur_nimg: int = 0
    step: int = 0
    pl_mean: torch.Tensor = field(default_factory=lambda: torch.zeros([]))


def build_state(cfg: TrainConfig, data: DataInfo, device: torch.device) -> TrainingState:
    torch.manual_seed(cfg.seed)
    G = Generator(**cfg.generator_kwargs(data.resolution, data.c_dim)).train().to(device)
    D = Discriminator(**cfg.discriminator_kwargs(data.resolution, data.c_dim)).train().to(device)
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)
    augment = AugmentPipe(PIPES[cfg.augpipe]).to(device)
    augment.p.fill_(cfg.augment_p)
    # Lazy regularisation: scale lr and betas so the regularised optimiser matches the unregularised one.
    g_ratio = cfg.pl_interval / (cfg.pl_interval + 1) if cfg.pl_weight > 0 else 1.0
    d_ratio = cfg.r1_interval / (cfg.r1_interval + 1) if cfg.gamma > 0 else 1.0
    opt_G = torch.optim.Adam(G.parameters(), lr=cfg.glr * g_ratio, betas=(0.0, 0.99 ** g_ratio), eps=1e-8)
    opt_D = torch.optim.Adam(D.parameters(), lr=cfg.dlr * d_ratio, betas=(0.0, 0.99 ** d_ratio), eps=1e-8)
    return TrainingState(G=G, D=D, G_ema=G_ema, augment=augment, opt_G=opt_G, opt_D=opt_D,
                         pl_mean=torch.zeros([], device=device))


class StopRequest:
    """Turns the first Ctrl-C or SIGTERM into a request the training loop honours after its current step (it then
    writes a snapshot and returns). The previous handlers come back at once, so a second signal stops the process
    as it always would. Signal handlers can only be set from the main thread; elsewhere this never fires."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, object] = {}

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                # A signal ignored on entry stays ignored: a shell starts its background jobs with SIGINT ignored
                # so that a Ctrl-C meant for the foreground does not reach them.
                if signal.getsignal(sig) is not signal.SIG_IGN:
                    self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        self._restore()

    def _restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def _handle(self, signum: int, frame) -> None:
        self.requested = True
        self._restore()
        print(f"\n{signal.Signals(signum).name}: finishing this step and writing a snapshot; send it again to quit "
              f"at once (and lose the work since the last snapshot)", file=sys.stderr, flush=True)


def _stop_agreed(stop: StopRequest, dist_info: Distributed, device: torch.device) -> bool:
    """Whether to stop now. Under torchrun every rank must leave the loop at the same step (a rank that left alone
    would hang the others in their next all-reduce), so one rank's request is shared with all."""
    if not dist_info.active:
        return stop.requested
    import torch.distributed as dist

    flag = torch.tensor([1.0 if stop.requested else 0.0], device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item())


def snapshot_paths(run_dir: Path) -> list[tuple[int, Path]]:
    found = []
    for path in run_dir.glob("network-snapshot-*.safetensors"):
        match = SNAPSHOT_RE.search(path.name)
        if match and (run_dir / f"training-state-{match.group(1)}.pt").exists():
            found.append((int(match.group(1)), path))
    return sorted(found)


def save_training_state(state: TrainingState, cfg: TrainConfig, run_dir: Path,
                        ada: AdaController | None = None) -> Path:
    """Weights (safetensors) then optimiser/counters/RNG (torch.save of tensors and numbers only)."""
    kimg = state.cur_nimg // 1000
    net_path = run_dir / f"network-snapshot-{kimg:06d}.safetensors"
    provenance = {"kimg": state.cur_nimg / 1000, "trainer": "atelier", "config": dataclasses.asdict(cfg)}
    save_safetensors(net_path, {"G_ema": state.G_ema, "G": state.G, "D": state.D}, provenance)
    extra = {
        "opt_G": state.opt_G.state_dict(), "opt_D": state.opt_D.state_dict(),
        "augment_p": state.augment.p.detach().cpu(), "cur_nimg": state.cur_nimg, "step": state.step,
        "pl_mean": state.pl_mean.detach().cpu(), "torch_rng": torch.get_rng_state(),
        "numpy_rng": json.dumps(_numpy_rng_state()), "python_rng": json.dumps(random.getstate()),
        "config": json.dumps(dataclasses.asdict(cfg)),
        "ada_pending": json.dumps(ada.pending() if ada is not None else [[], 0]),
    }
    buffer = io.BytesIO()
    torch.save(extra, buffer)
    atomic_write_bytes(run_dir / f"training-state-{kimg:06d}.pt", buffer.getvalue())
    _prune_snapshots(run_dir, cfg.keep_snapshots)
    return net_path


def _numpy_rng_state() -> list:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return [name, keys.tolist(), int(pos), int(has_gauss), float(cached)]


def _prune_snapshots(run_dir: Path, keep: int) -> None:
    for kimg, path in snapshot_paths(run_dir)[:-keep] if keep > 0 else []:
        path.unlink(missing_ok=True)
        (run_dir / f"training-state-{kimg:06d}.pt").unlink(missing_ok=True)


def training_state_path(net_path: Path) -> Path:
    """The training-state file that belongs to a network snapshot."""
    match = SNAPSHOT_RE.search(net_path.name)
    extra_path = net_path.with_name(f"training-state-{match.group(1)}.pt") if match else None
    if extra_path is None or not extra_path.exists():
        raise AtelierError(f"{net_path} has no matching training-state file; use --finetune to start a new run "
                           f"from its weights instead of resuming")
    return extra_path


def read_training_state(net_path: Path) -> dict:
    """The optimiser state and counters saved beside a snapshot, read with torch's weights-only loader.

    A file that does not load is named with what went wrong, never with torch's advice to retry with
    weights_only=False: that would run whatever the file holds.
    """
    import pickle

    from model.directions.importers import weights_only_refusal

    path = training_state_path(net_path)
    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as exc:
        raise AtelierError(f"{path} was refused: {weights_only_refusal(exc)}. A training-state file holds only "
                           f"tensors and numbers; nothing in this one was run. Resume from another snapshot, or "
                           f"start a new run from its weights with --finetune.") from None
    except (RuntimeError, EOFError, ValueError) as exc:
        raise AtelierError(f"{path} cannot be read ({type(exc).__name__}: {str(exc)[:200]}); it is damaged or "
                           f"truncated. Resume from another snapshot, or --finetune from its weights.") from None
    if not isinstance(state, dict) or not isinstance(state.get("cur_nimg"), int) or state["cur_nimg"] < 0:
        raise AtelierError(f"{path} is not an Atelier training-state file (no image count in it); resume from "
                           f"another snapshot, or --finetune from its weights")
    return state


def resumed_nimg(net_path: Path) -> int:
    return read_training_state(net_path)["cur_nimg"]


def _architecture(kwargs: dict) -> dict:
    """Init kwargs without num_fp16_res: which blocks compute in float16 is a speed setting, not a different
    network (same weights), so a run may move between CPU and GPU, or change --fp16-res, when it resumes."""
    return {k: _architecture(v) if isinstance(v, dict) else v for k, v in kwargs.items() if k != "num_fp16_res"}


def load_training_state(state: TrainingState, net_path: Path) -> tuple[list[float], int]:
    """Restore everything a snapshot holds; refuses a snapshot of another architecture before training starts."""
    for key, module in (("G", state.G), ("D", state.D), ("G_ema", state.G_ema)):
        loaded = load_network(net_path, key)
        if _architecture(loaded.kwargs) != _architecture(module.init_kwargs):
            raise AtelierError(f"cannot resume from {net_path}: its {key} was built as {loaded.kwargs}, but this run "
                               f"asks for {module.init_kwargs}. Resume with the same settings, or start a new run.")
        module.load_state_dict(loaded.module.state_dict())
        saved_kimg = loaded.kimg
    extra = read_training_state(net_path)
    for opt, key in ((state.opt_G, "opt_G"), (state.opt_D, "opt_D")):
        # The moments come from the snapshot, but the learning rate and betas are this run's settings: loading
        # would otherwise silently bring back the old ones, and --lr on a resumed run would do nothing.
        settings = [{k: group[k] for k in ("lr", "betas")} for group in opt.param_groups]
        opt.load_state_dict(extra[key])
        for group, setting in zip(opt.param_groups, settings):
            group.update(setting)
    if saved_kimg is not None and abs(saved_kimg - int(extra["cur_nimg"]) / 1000) > 1e-6:
        # Both files of a pair are written in turn under one name; a stop between the two writes leaves a pair
        # whose weights and counters disagree, and resuming from it would silently mix two moments of the run.
        raise AtelierError(f"{net_path} holds weights from {saved_kimg:g} kimg but its training-state file is from "
                           f"{int(extra['cur_nimg']) / 1000:g} kimg (a save was interrupted). Resume from an earlier "
                           f"snapshot of the run (pass its network-snapshot file to --resume).")
    state.augment.p.copy_(extra["augment_p"])
    state.cur_nimg, state.step = int(extra["cur_nimg"]), int(extra["step"])
    state.pl_mean.copy_(extra["pl_mean"])
    torch.set_rng_state(extra["torch_rng"])
    name, keys, pos, has_gauss, cached = json.loads(extra["numpy_rng"])
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    py_state = json.loads(extra["python_rng"])
    random.setstate((py_state[0], tuple(py_state[1]), py_state[2]))
    signs, count = json.loads(extra.get("ada_pending", "[[], 0]"))
    return list(signs), int(count)


def finetune_from(state: TrainingState, path: Path) -> None:
    """Start from someone's weights (stylegan2-ada pickle or Atelier file): G, D and G_ema where present."""
    for key, module in (("G", state.G), ("D", state.D), ("G_ema", state.G_ema)):
        try:
            loaded = load_network(path, key)
        except AtelierError:
            if key == "G_ema":
                raise
            loaded = load_network(path, "G_ema") if key == "G" else None
        if loaded is None:
            continue
        try:
            module.load_state_dict(loaded.module.state_dict())
        except RuntimeError:
            raise AtelierError(f"cannot fine-tune from {path}: its {key} architecture differs from this run's "
                               f"({loaded.kwargs} vs {module.init_kwargs}). Match --cbase/--cmax/--map and the "
                               f"resolution to the source network.") from None


def find_resume(run_root: Path, explicit: str | None, outdir: Path | None = None) -> Path | None:
    """--resume auto: the newest snapshot of `outdir` when it has one (the same run continues), else the newest
    across run folders; a path: that snapshot (or that run's newest)."""
    if not explicit:
        return None
    if explicit == "auto" and outdir is not None and snapshot_paths(outdir):
        return snapshot_paths(outdir)[-1][1]
    if explicit != "auto":
        path = Path(explicit)
        if path.is_dir():
            snaps = snapshot_paths(path)
            if not snaps:
                raise AtelierError(f"no snapshots in {path}; nothing to resume")
            return snaps[-1][1]
        if not path.exists():
            raise AtelierError(f"resume file not found: {path}")
        return path
    candidates = [snap for run in run_root.iterdir() if run.is_dir() for snap in snapshot_paths(run)[-1:]] \
        if run_root.exists() else []
    if not candidates:
        return None
    return max(candidates, key=lambda item: item[1].stat().st_mtime)[1]


# ----------------------------------------------------------------------------------------------------------------
# Losses


def track_w_avg(mapping: torch.nn.Module, w: torch.Tensor, dist_info: "Distributed") -> None:
    """Move the tracked average of w toward this step's batch mean, averaged over all processes.

    Averaging across ranks keeps the buffer identical everywhere (each rank sees different latents).
    """
    with torch.no_grad():
        batch_mean = w.detach().mean(dim=0)
        if dist_info.active:
            import torch.distributed as dist
            dist.all_reduce(batch_mean)
            batch_mean /= dist_info.world
        mapping.w_avg.copy_(batch_mean.lerp(mapping.w_avg, mapping.w_avg_beta))


def accumulate_ema(G_ema: Generator, G: Generator, beta: float) -> None:
    with torch.no_grad():
        for p_ema, p in zip(G_ema.parameters(), G.parameters()):
            p_ema.copy_(p.detach().lerp(p_ema, beta))
        for b_ema, b in zip(G_ema.buffers(), G.buffers()):
            b_ema.copy_(b)


def _module(m: torch.nn.Module) -> torch.nn.Module:
    return m.module if hasattr(m, "module") else m


# ----------------------------------------------------------------------------------------------------------------
# Loop


@dataclass
class Distributed:
    rank: int = 0
    world: int = 1

    @property
    def active(self) -> bool:
        return self.world > 1


def init_distributed(device_kind: str) -> Distributed:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Distributed()
    import torch.distributed as dist
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_kind == "cuda" else "gloo")
    return Distributed(rank=dist.get_rank(), world=dist.get_world_size())


def train(cfg: TrainConfig, run_dir: Path, resume: Path | None = None, finetune: Path | None = None,
          progress: bool = True, on_log: Callable[[dict], None] | None = None,
          on_finish: Callable[[TrainingState], None] | None = None, announce: bool = False) -> Path:
    """Run (or continue) training until cfg.kimg; returns the newest snapshot path.

    `on_log` sees every log entry (rank 0); `on_finish` sees the final state on every rank (tests compare ranks);
    `announce` says on stderr when the training loop starts, and that Ctrl-C is safe from then on.
    """
    from model.network.render import pick_device

    device = pick_device(cfg.device)
    dist_info = init_distributed(device.type)
    if device.type == "cuda" and dist_info.active:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    if cfg.batch % dist_info.world:
        raise AtelierError(f"batch {cfg.batch} must be divisible by the number of processes ({dist_info.world})")
    local_batch = cfg.batch // dist_info.world
    if cfg.augpipe not in PIPES:
        raise AtelierError(f"--augpipe must be one of {', '.join(PIPES)}, not {cfg.augpipe!r} (bgc is ADA's default)")
    if cfg.mbstd_group < 1:
        raise AtelierError(f"--mbstd-group must be at least 1 (4 is the usual choice), not {cfg.mbstd_group}")
    if local_batch % min(cfg.mbstd_group, local_batch):
        raise AtelierError(f"the per-process batch ({local_batch}) must be a multiple of the minibatch-std group "
                           f"size ({cfg.mbstd_group}); choose --batch as a multiple of "
                           f"{cfg.mbstd_group * dist_info.world}")
    channels_at_4 = min(cfg.channel_base // 4, cfg.channel_max)
    if cfg.mbstd_channels < 0 or (cfg.mbstd_channels and channels_at_4 % cfg.mbstd_channels):
        raise AtelierError(f"--mbstd-channels must divide D's {channels_at_4} channels at 4x4 (1, 2, 4, ...), "
                           f"not {cfg.mbstd_channels}")
    start_nimg = resumed_nimg(resume) if resume is not None else 0
    data, source = open_training_data(cfg, dist_info.rank, dist_info.world, start=start_nimg // dist_info.world)
    if cfg.channel_base < data.resolution:  # the highest-resolution blocks would get no channels at all
        raise AtelierError(f"--cbase {cfg.channel_base} is below the data's resolution ({data.resolution} px): "
                           f"use at least {data.resolution} (channels at resolution r are min(cbase / r, cmax))")
    state = build_state(cfg, data, device)
    ada_pending: tuple[list[float], int] = ([], 0)
    if resume is not None:
        ada_pending = load_training_state(state, resume)
        if dist_info.rank > 0:  # the saved RNG is rank 0's; other ranks branch off it deterministically
            torch.manual_seed(int(torch.randint(0, 2 ** 31, [])) + dist_info.rank)
    else:
        if finetune is not None:
            finetune_from(state, finetune)
        # Different ranks draw different latents and augmentations; weights start identical (same seed).
        torch.manual_seed(cfg.seed * 7919 + dist_info.rank)
    if dist_info.rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(run_dir / "config.json", json.dumps(dataclasses.asdict(cfg), indent=2).encode())
    G, D = state.G, state.D
    if device.type == "cpu" and cfg.cpu_bf16_res > 0:
        # G_ema stays float32: sample grids and exported snapshots render exactly as before.
        use_cpu_bfloat16(G, cfg.cpu_bf16_res)
        use_cpu_bfloat16(D, cfg.cpu_bf16_res)
    if dist_info.active:
        from torch.nn.parallel import DistributedDataParallel as DDP
        ids = [device.index] if device.type == "cuda" else None
        G_mapping = DDP(G.mapping, device_ids=ids, broadcast_buffers=False)
        G_synthesis = DDP(G.synthesis, device_ids=ids, broadcast_buffers=False)
        D_ddp = DDP(D, device_ids=ids, broadcast_buffers=False)
    else:
        G_mapping, G_synthesis, D_ddp = G.mapping, G.synthesis, D
    ada = AdaController(state.augment, cfg.ada_target, cfg.ada_interval, cfg.ada_kimg) if cfg.augment == "ada" else None
    probe = quality_probe(cfg, data) if dist_info.rank == 0 and cfg.quality_samples > 0 else None
    if ada is not None:
        ada.restore(*ada_pending)
    if cfg.augment == "none":
        state.augment.p.zero_()

    def run_G(z: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # Map both latents in one call: under DDP every wrapped module must run exactly once per backward.
        both = G_mapping(torch.cat([z, torch.randn_like(z)]), torch.cat([c, c]), update_w_avg=False)
        ws, ws_other = both[:z.shape[0]], both[z.shape[0]:]
        if torch.is_grad_enabled():
            track_w_avg(G.mapping, ws[:, 0], dist_info)
        if cfg.style_mixing > 0 and float(torch.rand([])) < cfg.style_mixing:
            # From a random layer on, use another latent's w: teaches the layers to act independently.
            cutoff = int(torch.randint(1, ws.shape[1], []))
            ws = torch.cat([ws[:, :cutoff], ws_other[:, cutoff:]], dim=1)
        return G_synthesis(ws), ws

    def run_D(img: torch.Tensor, c: torch.Tensor, for_generator: bool = False) -> torch.Tensor:
        # The generator step uses the plain D: its weights are frozen then, so DDP has nothing to synchronise.
        return (D if for_generator else D_ddp)(state.augment(img), c)

    total_nimg = int(cfg.kimg * 1000)
    last_snap_time, last_snap_nimg = time.time(), state.cur_nimg
    tick_time, tick_nimg = time.time(), state.cur_nimg
    stats: dict[str, list[float]] = {}
    bar = None
    if progress and dist_info.rank == 0:
        from tqdm import tqdm
        bar = tqdm(total=total_nimg / 1000, initial=state.cur_nimg / 1000, unit="kimg", dynamic_ncols=True,
                   bar_format="{l_bar}{bar}| {n:.2f}/{total:.0f} kimg [{elapsed}<{remaining}] {postfix}")
    stop = StopRequest()
    with stop:
        if announce and dist_info.rank == 0:
            print(f"training from {state.cur_nimg / 1000:g} to {cfg.kimg:g} kimg in {run_dir}; Ctrl-C writes a "
                  f"snapshot and stops", file=sys.stderr, flush=True)
        newest = None
        z_dim = cfg.z_dim
        while state.cur_nimg < total_nimg:
            real, real_c = next_batch(source, local_batch, data.c_dim, device)
            gen_c = real_c[torch.randperm(local_batch, device=device)]

            # Generator: non-saturating loss.
            G.requires_grad_(True)
            D.requires_grad_(False)
            state.opt_G.zero_grad(set_to_none=True)
            fake, _ = run_G(torch.randn([local_batch, z_dim], device=device), gen_c)
            loss_G = F.softplus(-run_D(fake, gen_c, for_generator=True)).mean()
            loss_G.backward()
            _add(stats, "loss_G", loss_G)
            # Path-length regularisation (lazy): keeps the W -> image Jacobian a consistent size.
            if cfg.pl_weight > 0 and state.step % cfg.pl_interval == 0:
                pl_batch = max(local_batch // 2, 1)
                img, ws = run_G(torch.randn([pl_batch, z_dim], device=device), gen_c[:pl_batch])
                noise = torch.randn_like(img) / math.sqrt(img.shape[2] * img.shape[3])
                grads, = torch.autograd.grad((img * noise).sum(), ws, create_graph=True)
                lengths = grads.square().sum(2).mean(1).sqrt()
                state.pl_mean.copy_(state.pl_mean.lerp(lengths.mean().detach(), 0.01))
                penalty = (lengths - state.pl_mean).square().mean() * cfg.pl_weight * cfg.pl_interval
                (penalty + img[:, 0, 0, 0].sum() * 0).backward()
                _add(stats, "pl_penalty", penalty)
            state.opt_G.step()

            # Discriminator: logistic loss on fakes and reals, plus lazy R1 on reals.
            G.requires_grad_(False)
            D.requires_grad_(True)
            state.opt_D.zero_grad(set_to_none=True)
            with torch.no_grad():
                fake, _ = run_G(torch.randn([local_batch, z_dim], device=device), gen_c)
            loss_fake = F.softplus(run_D(fake, gen_c)).mean()
            loss_fake.backward()
            do_r1 = cfg.gamma > 0 and state.step % cfg.r1_interval == 0
            real_in = real.detach().requires_grad_(do_r1)
            real_logits = run_D(real_in, real_c)
            loss_real = F.softplus(-real_logits).mean()
            if do_r1:
                grads, = torch.autograd.grad(real_logits.sum(), real_in, create_graph=True)
                r1 = grads.square().sum([1, 2, 3]).mean()
                loss_real = loss_real + r1 * (cfg.gamma / 2) * cfg.r1_interval
                _add(stats, "r1", r1)
            loss_real.backward()
            state.opt_D.step()
            _add(stats, "loss_D", loss_fake + F.softplus(-real_logits.detach()).mean())
            if ada is not None:
                signs = real_logits.detach()
                if dist_info.active:
                    import torch.distributed as dist
                    signs = signs.sign()
                    gathered = [torch.zeros_like(signs) for _ in range(dist_info.world)]
                    dist.all_gather(gathered, signs)
                    signs = torch.cat(gathered)
                ada.record(signs)
                rt = ada.step(cfg.batch)
                if rt is not None:
                    _add(stats, "ada_rt", torch.tensor(rt))

            # EMA generator with ramp-up: early on, follow G closely.
            state.cur_nimg += cfg.batch
            state.step += 1
            ema_nimg = cfg.ema_nimg()
            if cfg.ema_rampup is not None:
                ema_nimg = min(ema_nimg, state.cur_nimg * cfg.ema_rampup)
            accumulate_ema(state.G_ema, G, 0.5 ** (cfg.batch / max(ema_nimg, 1e-8)))
            if bar is not None:
                bar.update(cfg.batch / 1000)
                if state.step % 10 == 0:
                    bar.set_postfix_str(f"G {_last(stats, 'loss_G'):.2f} D {_last(stats, 'loss_D'):.2f} "
                                        f"p {float(state.augment.p):.3f}")

            stopping = _stop_agreed(stop, dist_info, device)
            done = state.cur_nimg >= total_nimg or stopping
            due = (time.time() - last_snap_time >= cfg.snap_minutes * 60
                   or state.cur_nimg - last_snap_nimg >= cfg.snap_kimg * 1000)
            if done or due:
                seconds = time.time() - tick_time
                nimg = max(state.cur_nimg - tick_nimg, 1)
                entry = {"kimg": round(state.cur_nimg / 1000, 3), "step": state.step,
                         "augment_p": round(float(state.augment.p), 4),
                         "sec_per_kimg": round(seconds / nimg * 1000, 2), "images_per_s": round(nimg / seconds, 2),
                         "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
                if stopping and state.cur_nimg < total_nimg:
                    entry["stopped"] = True  # asked to stop (Ctrl-C, SIGTERM) before cfg.kimg
                entry.update({key: round(float(np.mean(vals)), 5) for key, vals in stats.items() if vals})
                stats = {}
                if dist_info.rank == 0:
                    newest = save_training_state(state, cfg, run_dir, ada)
                    if probe is not None:
                        entry.update(_measure_snapshot(probe, state, cfg, run_dir, data.c_dim))
                    write_sample_grid(state.G_ema, run_dir / f"samples-{state.cur_nimg // 1000:06d}.png",
                                      cfg.grid_seeds, data.c_dim)
                    with open(run_dir / "log.jsonl", "a") as log:
                        log.write(json.dumps(entry) + "\n")
                    if on_log is not None:
                        on_log(entry)
                last_snap_time, last_snap_nimg = time.time(), state.cur_nimg
                tick_time, tick_nimg = time.time(), state.cur_nimg
                if stopping:
                    break
        if bar is not None:
            bar.close()
    if on_finish is not None:
        on_finish(state)
    if dist_info.active:
        import torch.distributed as dist
        dist.barrier()
    return newest if newest is not None else snapshot_paths(run_dir)[-1][1]


def quality_probe(cfg: TrainConfig, data: DataInfo):
    """The reference side of the per-snapshot Fréchet distance (model.training.quality), read once per process."""
    from model.training.quality import QualityProbe, dataset_reference, synthetic_reference

    reference = (synthetic_reference(cfg.quality_samples, data.resolution) if cfg.data == SYNTHETIC
                 else dataset_reference(cfg.data, cfg.quality_samples))
    return QualityProbe.from_chunks(reference, cfg.quality_samples)


def _measure_snapshot(probe, state: TrainingState, cfg: TrainConfig, run_dir: Path, c_dim: int) -> dict:
    """The snapshot's Fréchet distance, and whether it became the run's best (whose generator is then kept)."""
    from model.training.quality import keep_if_best

    frechet = round(probe.frechet(state.G_ema, c_dim), 3)
    kimg = state.cur_nimg / 1000
    provenance = {"kimg": kimg, "trainer": "atelier", "frechet": frechet, "config": dataclasses.asdict(cfg)}
    best = keep_if_best(run_dir, frechet, kimg, lambda path: save_safetensors(path, {"G_ema": state.G_ema},
                                                                                provenance))
    return {"frechet": frechet, "best": best}


def _add(stats: dict[str, list[float]], key: str, value: torch.Tensor) -> None:
    stats.setdefault(key, []).append(float(value.detach()))


def _last(stats: dict[str, list[float]], key: str) -> float:
    values = stats.get(key)
    return values[-1] if values else float("nan")


@torch.no_grad()
def write_sample_grid(G: Generator, path: Path, seeds: tuple[int, ...], c_dim: int, psi: float = 1.0) -> Path:
    """A fixed-seed grid so successive snapshots can be compared by eye."""
    from model.network.render import seeds_to_z

    device = next(G.parameters()).device
    z = torch.as_tensor(seeds_to_z(list(seeds), G.z_dim), dtype=torch.float32, device=device)
    c = torch.zeros([len(seeds), c_dim], device=device)
    if c_dim:
        c[torch.arange(len(seeds)), torch.as_tensor([s % c_dim for s in seeds], device=device)] = 1
    was_training = G.training
    G.eval()
    images = to_uint8(G(z, c, truncation_psi=psi, noise_mode="const", force_fp32=True))
    G.train(was_training)
    return save_png(image_grid(images, columns=int(math.ceil(math.sqrt(len(seeds))))), path)
