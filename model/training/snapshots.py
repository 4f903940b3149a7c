"""What a training run writes to its folder and reads back from it: network snapshots with their training state,
resuming (and fine-tuning) from them, ``config.json``, sample grids, and one ``log.jsonl`` line per snapshot.

A snapshot is ``network-snapshot-KKKKKK.safetensors`` (G_ema, G, D) and a matching ``training-state-KKKKKK.pt``
(optimisers, augmentation p, counters, RNG). Resuming restores all of it, so a run continued after a stop is the same
run. model.training.runs reads the same folder for ``atelier runs`` and the app.
"""
from __future__ import annotations

import dataclasses
import io
import json
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from core.errors import AtelierError
from core.files import atomic_write_bytes
from model.network.checkpoint import load_network, save_safetensors
from model.network.networks import Discriminator, Generator
from model.network.render import image_grid, save_png, to_uint8
from model.training.augment import AdaController, AugmentPipe
from model.training.config import SYNTHETIC, TrainConfig
from model.training.data import DataInfo
from model.training.runs import SNAPSHOT as SNAPSHOT_RE

if TYPE_CHECKING:
    from model.training.quality import QualityProbe


@dataclass
class TrainingState:
    """Everything a snapshot holds: the networks, their optimisers, augmentation, counters and the path-length mean."""
    G: Generator
    D: Discriminator
    G_ema: Generator
    augment: AugmentPipe
    opt_G: torch.optim.Optimizer
    opt_D: torch.optim.Optimizer
    cur_nimg: int = 0
    step: int = 0
    pl_mean: torch.Tensor = field(default_factory=lambda: torch.zeros([]))


# ----------------------------------------------------------------------------------------------------------------
# Snapshots, and resuming or fine-tuning from one


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
# The run folder while training: config.json, the snapshot schedule, log lines, sample grids


def write_config(run_dir: Path, cfg: TrainConfig) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(run_dir / "config.json", json.dumps(dataclasses.asdict(cfg), indent=2).encode())


@dataclass
class SnapshotClock:
    """When the next snapshot is due (after cfg.snap_kimg or cfg.snap_minutes, whichever comes first), and how fast
    training went since the last one."""
    nimg: int
    since: float = field(default_factory=time.time)

    def due(self, cur_nimg: int, cfg: TrainConfig) -> bool:
        return time.time() - self.since >= cfg.snap_minutes * 60 or cur_nimg - self.nimg >= cfg.snap_kimg * 1000

    def speed(self, cur_nimg: int) -> dict[str, float]:
        seconds = time.time() - self.since
        nimg = max(cur_nimg - self.nimg, 1)
        return {"sec_per_kimg": round(seconds / nimg * 1000, 2), "images_per_s": round(nimg / seconds, 2)}

    def restart(self, cur_nimg: int) -> None:
        self.nimg, self.since = cur_nimg, time.time()


@dataclass
class LogStats:
    """Loss terms and ADA's measure since the last snapshot; each log line holds their means."""
    values: dict[str, list[float]] = field(default_factory=dict)

    def add(self, named: dict[str, torch.Tensor]) -> None:
        for key, value in named.items():
            self.values.setdefault(key, []).append(float(value.detach()))

    def last(self, key: str) -> float:
        values = self.values.get(key)
        return values[-1] if values else float("nan")

    def take_means(self) -> dict[str, float]:
        """The means as the log writes them, in the order the terms first appeared; then starts over."""
        means = {key: round(float(np.mean(vals)), 5) for key, vals in self.values.items() if vals}
        self.values = {}
        return means


def log_entry(state: TrainingState, clock: SnapshotClock, stats: LogStats, stopped: bool) -> dict:
    """One log.jsonl line: where the run is, its speed since the last snapshot, and the means of its loss terms."""
    entry = {"kimg": round(state.cur_nimg / 1000, 3), "step": state.step,
             "augment_p": round(float(state.augment.p), 4), **clock.speed(state.cur_nimg),
             "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
    if stopped:
        entry["stopped"] = True  # asked to stop (Ctrl-C, SIGTERM) before cfg.kimg
    entry.update(stats.take_means())
    return entry


def write_snapshot(state: TrainingState, cfg: TrainConfig, run_dir: Path, entry: dict, c_dim: int,
                   ada: AdaController | None = None, probe: QualityProbe | None = None) -> Path:
    """Everything rank 0 writes at a snapshot: the snapshot pair, the quality measure (added to `entry`), the
    sample grid, and the log line. Returns the network snapshot's path."""
    newest = save_training_state(state, cfg, run_dir, ada)
    if probe is not None:
        entry.update(_measure_snapshot(probe, state, cfg, run_dir, c_dim))
    write_sample_grid(state.G_ema, run_dir / f"samples-{state.cur_nimg // 1000:06d}.png", cfg.grid_seeds, c_dim)
    with open(run_dir / "log.jsonl", "a") as log:
        log.write(json.dumps(entry) + "\n")
    return newest


def quality_probe(cfg: TrainConfig, data: DataInfo) -> QualityProbe:
    """The reference side of the per-snapshot Fréchet distance (model.training.quality), read once per process."""
    from model.training.quality import QualityProbe, dataset_reference, synthetic_reference

    reference = (synthetic_reference(cfg.quality_samples, data.resolution) if cfg.data == SYNTHETIC
                 else dataset_reference(cfg.data, cfg.quality_samples))
    return QualityProbe.from_chunks(reference, cfg.quality_samples)


def _measure_snapshot(probe: QualityProbe, state: TrainingState, cfg: TrainConfig, run_dir: Path, c_dim: int) -> dict:
    """The snapshot's Fréchet distance, and whether it became the run's best (whose generator is then kept)."""
    from model.training.quality import keep_if_best

    frechet = round(probe.frechet(state.G_ema, c_dim), 3)
    kimg = state.cur_nimg / 1000
    provenance = {"kimg": kimg, "trainer": "atelier", "frechet": frechet, "config": dataclasses.asdict(cfg)}
    best = keep_if_best(run_dir, frechet, kimg, lambda path: save_safetensors(path, {"G_ema": state.G_ema},
                                                                                provenance))
    return {"frechet": frechet, "best": best}


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
