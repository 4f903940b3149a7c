"""Sub-commands of `atelier` that belong to the `model` package: generate, convert, info, train, bench render."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import typer

from core.errors import AtelierError, exit_on_user_error

# Other packages add their benchmarks here (`atelier bench discovery`, `atelier bench app`).
bench_app = typer.Typer(help="Speed and quality benchmarks (figures for the README).", no_args_is_help=True)


MAX_PSI = 10.0  # truncation ψ beyond this only saturates images (the original's demos stay within ±1.5)


def _network_option() -> Optional[Path]:
    return typer.Option(None, "--network", "-n", help="Generator .pkl or .safetensors (default: the demo model).")


def device_option(default: str = "auto") -> str:
    return typer.Option(default, help="auto | cpu | cuda | cuda:N (auto: the GPU if there is one).")


def precision_option(default: str = "auto") -> str:
    return typer.Option(default, help="auto | float32 | bfloat16 | float16. auto: float16 on a GPU where the network "
                                      "was trained with it, bfloat16 on a CPU that has it in hardware (AVX-512 BF16 "
                                      "or AMX; within a few levels of float32, see the README), else float32.")


@exit_on_user_error
def generate(
    network: Optional[Path] = _network_option(),
    seeds: str = typer.Option("0-7", help="Seeds, e.g. '0-7' or '3,14,15' (integers 0 … 2**32-1)."),
    trunc: float = typer.Option(1.0, "--trunc", help="Truncation ψ (1 = none; 0.7 is a common choice)."),
    cutoff: Optional[int] = typer.Option(None, help="Apply truncation to the first N ws rows only."),
    class_index: Optional[int] = typer.Option(None, "--class", help="Class for conditional models."),
    noise_mode: str = typer.Option("const", help="const | random | none"),
    outdir: Path = typer.Option(Path("out"), help="Folder for seedNNNN.png files."),
    device: str = device_option(),
    precision: str = precision_option("float32"),
) -> None:
    """Render one PNG per seed (named seedNNNN.png, as stylegan2-ada does)."""
    from model.network.render import Renderer, check_precision, configure_threads, parse_seeds, save_png

    from core.files import check_output_path

    configure_threads()
    seed_list = parse_seeds(seeds)
    check_output_path(outdir, "--outdir", folder=True)
    check_precision(precision)
    renderer = Renderer(network, device=device, precision=precision)
    if noise_mode not in ("const", "random", "none"):
        raise AtelierError(f"--noise-mode must be const, random or none, not {noise_mode!r}")
    if not -MAX_PSI <= trunc <= MAX_PSI:
        raise AtelierError(f"--trunc {trunc}: use a value between {-MAX_PSI:g} and {MAX_PSI:g} (1 = no truncation, "
                           f"0.7 is a common choice)")
    if cutoff is not None and not 1 <= cutoff <= renderer.num_ws:
        raise AtelierError(f"--cutoff {cutoff}: this model has {renderer.num_ws} ws rows, so give 1 … "
                           f"{renderer.num_ws} (or leave it out to truncate every row)")
    for start in range(0, len(seed_list), 32):
        chunk = seed_list[start:start + 32]
        images = renderer.render_seeds(chunk, psi=trunc, cutoff=cutoff, class_index=class_index,
                                       noise_mode=noise_mode)
        for seed, image in zip(chunk, images):
            save_png(image, outdir / f"seed{seed:04d}.png")
    typer.echo(f"wrote {len(seed_list)} images to {outdir}")


@exit_on_user_error
def convert(src: Path = typer.Argument(..., help="stylegan2-ada-pytorch pickle, or an Atelier training snapshot"),
            dst: Path = typer.Argument(..., help="output .safetensors"),
            generator_only: bool = typer.Option(False, "--generator-only",
                                                help="Keep only G_ema: the smallest file that renders.")) -> None:
    """Convert a stylegan2-ada-pytorch pickle to Atelier's .safetensors (no code can hide in it), or slim a
    training snapshot down to its generator."""
    from model.network.checkpoint import convert as convert_file

    if dst.suffix != ".safetensors":
        raise AtelierError(f"the output must end in .safetensors, got {dst.name}")
    if dst.resolve() == src.resolve():
        raise AtelierError("the output would overwrite the input; choose another output name")
    from core.files import check_output_path

    check_output_path(dst, "the output")
    out = convert_file(src, dst, generator_only=generator_only)
    typer.echo(f"wrote {out}")


@exit_on_user_error
def info(network: Optional[Path] = typer.Argument(None, help="Network file (default: the demo model).")) -> None:
    """Print a network's architecture and fingerprint."""
    from model.network.checkpoint import load_network
    from core.settings import default_model_path

    loaded = load_network(network or default_model_path())
    G = loaded.module
    typer.echo(json.dumps({"source": loaded.source, "fingerprint": loaded.fingerprint, "z_dim": G.z_dim,
                           "w_dim": G.w_dim, "c_dim": G.c_dim, "num_ws": G.num_ws, "resolution": G.img_resolution,
                           "kimg": loaded.kimg, "architecture": loaded.kwargs}, indent=2))


_AUGPIPE_HELP = ("Augmentations ADA may apply: bgc (all), bg (geometric), color, blit (flips, quarter turns, "
                 "whole-pixel shifts) or geom (scaling, rotation, stretching, sub-pixel shifts).")


def _check_training_options(aug: str, batch: int, fp16_res: int, bf16_res: int) -> None:
    """The checks `train` and `bench train` share, made before anything is built."""
    if aug not in ("ada", "fixed", "none"):
        raise AtelierError(f"--aug must be ada, fixed or none, not {aug!r}")
    if batch < 1:
        raise AtelierError("--batch must be at least 1")
    if bf16_res < 0 or fp16_res < 0:
        raise AtelierError("--bf16-res and --fp16-res count resolutions: use 0 or more")


def _check_model_options(resolution: int, cbase: int, cmax: int, map_layers: int, gamma: float,
                         pl_weight: float) -> None:
    """Architecture and loss-weight options of `train` and `bench train`, within the bounds Atelier loads a
    network with (model.architecture), checked before anything is allocated."""
    from model.network.architecture import MAX_CHANNEL_BASE, MAX_CHANNELS, MAX_MAPPING_LAYERS, MAX_RESOLUTION

    if resolution < 4 or resolution > MAX_RESOLUTION or resolution & (resolution - 1):
        raise AtelierError(f"--resolution {resolution}: use a power of two from 4 to {MAX_RESOLUTION} (64: the demo)")
    if not resolution <= cbase <= MAX_CHANNEL_BASE:
        raise AtelierError(f"--cbase {cbase}: use {resolution} (the resolution) up to {MAX_CHANNEL_BASE} "
                           f"(channels at resolution r are min(cbase / r, cmax))")
    if not 1 <= cmax <= MAX_CHANNELS:
        raise AtelierError(f"--cmax {cmax}: use 1 to {MAX_CHANNELS} channels (512 for full-size StyleGAN2)")
    if not 1 <= map_layers <= MAX_MAPPING_LAYERS:
        raise AtelierError(f"--map {map_layers}: use 1 to {MAX_MAPPING_LAYERS} mapping layers (8 in StyleGAN2)")
    if gamma < 0 or pl_weight < 0:
        raise AtelierError("--gamma and --pl-weight are weights: give 0 (off) or more")


@exit_on_user_error
def train(
    data: str = typer.Option("synthetic", help="Dataset zip/folder (stylegan2-ada layout), or 'synthetic'."),
    outdir: Optional[Path] = typer.Option(None, help="Run folder (default: a new folder under ~/.cache/atelier/runs)."),
    resume: Optional[str] = typer.Option(None, help="'auto' (the newest snapshot in --outdir, else of any run), "
                                                    "a run folder, or a network-snapshot file."),
    finetune: Optional[Path] = typer.Option(None, help="Start from these weights (stylegan2-ada .pkl or Atelier)."),
    kimg: float = typer.Option(1000, help="Train until this many thousand real images have been shown."),
    batch: int = typer.Option(16),
    resolution: int = typer.Option(64, help="Image size for the synthetic stream."),
    cond: bool = typer.Option(False, "--cond", help="Class-conditional on dataset labels."),
    cbase: int = typer.Option(4096, help="Channel base (channels at resolution r = min(cbase / r, cmax))."),
    cmax: int = typer.Option(64, help="Channel maximum."),
    map_layers: int = typer.Option(2, "--map", help="Mapping network layers."),
    gamma: float = typer.Option(0.05, help="R1 regularisation weight."),
    lr: float = typer.Option(0.0025, help="Adam learning rate of G and D."),
    pl_weight: float = typer.Option(0.0, help="Path-length regularisation weight (0 = off)."),
    aug: str = typer.Option("ada", help="ada | fixed | none"),
    augpipe: str = typer.Option("bgc", help=_AUGPIPE_HELP),
    p: float = typer.Option(0.0, help="Initial (ada) or fixed augmentation probability."),
    target: float = typer.Option(0.6, help="ADA overfitting target."),
    ada_kimg: float = typer.Option(100.0, "--ada-kimg", help="How fast ADA may move p: from 0 to 1 in this many "
                                                             "kimg at the most (with --target 0.95 or so, p falls "
                                                             "steadily to 0: augmentation eased off over a run)."),
    mixing: float = typer.Option(0.9, help="Style mixing probability."),
    mbstd_group: int = typer.Option(4, "--mbstd-group", help="Minibatch-std group size in D (a diversity signal; "
                                                             "--batch must be a multiple)."),
    mbstd_channels: int = typer.Option(1, "--mbstd-channels", help="Minibatch-std features in D (1 is the "
                                                                   "usual choice; its 4x4 width must be a multiple)."),
    fp16_res: int = typer.Option(0, help="Number of highest resolutions in float16 (GPU only)."),
    bf16_res: int = typer.Option(0, help="CPU only: the N highest resolutions of G and D train in bfloat16 (about "
                                         "1.5× faster on CPUs with AVX-512 BF16 or AMX; snapshots stay float32)."),
    snap_kimg: float = typer.Option(4.0), snap_minutes: float = typer.Option(5.0),
    quality_samples: int = typer.Option(1000, help="Images per snapshot for the Fréchet distance that keeps the "
                                                   "run's best generator as network-best.safetensors (0 = off)."),
    seed: int = typer.Option(0), threads: int = typer.Option(0, help="CPU threads (0 = all)."),
    device: str = typer.Option("auto"),
    progress: bool = typer.Option(True, help="Show a progress bar."),
) -> None:
    """Train StyleGAN2-ADA (resumable; run several processes with torchrun for multi-GPU)."""
    from core.settings import runs_dir
    from model.training.config import TrainConfig
    from model.training.snapshots import find_resume, resumed_nimg
    from model.training.train import train as run_training

    _check_training_options(aug, batch, fp16_res, bf16_res)
    # --resolution sizes the synthetic stream only; a dataset brings its own (checked when it is opened)
    _check_model_options(resolution if data == "synthetic" else 4, cbase, cmax, map_layers, gamma, pl_weight)
    for name, value in (("--p", p), ("--target", target), ("--mixing", mixing)):
        if not 0 <= value <= 1:
            raise AtelierError(f"{name} {value}: give a probability from 0 to 1")
    if threads < 0:
        raise AtelierError(f"--threads {threads}: give 0 (all CPU threads) or a number of threads")
    if snap_kimg <= 0 or snap_minutes <= 0:
        raise AtelierError("--snap-kimg and --snap-minutes must be above 0 (a snapshot every so often)")
    if kimg <= 0:
        raise AtelierError("--kimg must be above 0 (thousands of images)")
    if quality_samples != 0 and quality_samples < 10:
        raise AtelierError(f"--quality-samples {quality_samples}: use 0 (off) or at least 10 (1000 is the default)")
    if not 0 < lr < 1:
        raise AtelierError(f"--lr must be between 0 and 1 (0.0025 is the usual choice), not {lr}")
    if ada_kimg <= 0:
        raise AtelierError(f"--ada-kimg must be above 0 (100 is the usual choice), not {ada_kimg}")
    cfg = TrainConfig(data=data, resolution=resolution, conditional=cond, batch=batch, channel_base=cbase,
                      channel_max=cmax, map_layers=map_layers, gamma=gamma, pl_weight=pl_weight, augment=aug,
                      augpipe=augpipe, augment_p=p, ada_target=target, ada_kimg=ada_kimg, style_mixing=mixing,
                      num_fp16_res=fp16_res, cpu_bf16_res=bf16_res, mbstd_group=mbstd_group,
                      mbstd_channels=mbstd_channels, glr=lr, dlr=lr,
                      kimg=kimg, snap_kimg=snap_kimg, snap_minutes=snap_minutes, seed=seed, device=device,
                      threads=threads, quality_samples=quality_samples)
    if not data.strip():  # Path("") is the current folder: never what an empty --data meant
        raise AtelierError("--data is empty: give a dataset .zip or folder (atelier prepare makes one), or synthetic")
    if data != "synthetic":
        from scrape.dataset import validate_dataset
        validate_dataset(data)  # every dataset problem is reported before any training starts
    if resume and finetune:
        raise AtelierError("--resume continues a run with its own weights, so --finetune would be ignored; give one "
                           "of them (--finetune starts a new run from other weights)")
    resume_path = find_resume(runs_dir(), resume, outdir)
    if resume == "auto" and resume_path is None:
        typer.echo("no earlier snapshot found; starting a new run")
    run_dir = outdir or (resume_path.parent if resume_path else runs_dir() / time.strftime("run-%Y%m%d-%H%M%S"))
    if resume_path:
        typer.echo(f"resuming from {resume_path}")
    newest = run_training(cfg, run_dir, resume=resume_path, finetune=finetune, progress=progress, announce=True)
    typer.echo(f"newest snapshot: {newest}")
    reached = resumed_nimg(newest) / 1000
    if reached < kimg:
        from model.training.runs import shell_path

        typer.echo(f"stopped at {reached:g} of {kimg:g} kimg; to continue, run the same command with "
                   f"--resume auto --outdir {shell_path(run_dir)}")


@exit_on_user_error
def bench_train(
    kimg: float = typer.Option(1.0, help="Thousands of images to time (after the warm-up)."),
    warmup: float = typer.Option(0.25, help="Thousands of images trained first and not timed."),
    batch: int = typer.Option(16),
    resolution: int = typer.Option(64, help="Image size of the synthetic stream."),
    cbase: int = typer.Option(4096, help="Channel base (channels at resolution r = min(cbase / r, cmax))."),
    cmax: int = typer.Option(64, help="Channel maximum."),
    map_layers: int = typer.Option(2, "--map", help="Mapping network layers."),
    gamma: float = typer.Option(0.05, help="R1 weight (the demo run's)."),
    pl_weight: float = typer.Option(0.0, help="Path-length regularisation weight (the demo run uses 2 from 400 kimg; "
                                              "0, the default, is the setting the original trainer's figures use)."),
    aug: str = typer.Option("ada", help="ada | fixed | none"),
    augpipe: str = typer.Option("bgc", help=_AUGPIPE_HELP),
    fp16_res: int = typer.Option(0, help="Number of highest resolutions in float16 (GPU only)."),
    bf16_res: int = typer.Option(0, help="CPU only: the N highest resolutions of G and D train in bfloat16 (about "
                                         "1.5× faster on CPUs with AVX-512 BF16 or AMX; snapshots stay float32)."),
    threads: int = typer.Option(0, help="CPU threads (0 = all)."),
    device: str = typer.Option("auto"),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Training images/s and seconds per kimg for a config (default: the demo model's architecture, without
    path-length regularisation), on fresh weights."""
    from model.benchmarks.bench import bench_train as run_bench, format_train_table
    from model.training.config import TrainConfig

    _check_training_options(aug, batch, fp16_res, bf16_res)
    _check_model_options(resolution, cbase, cmax, map_layers, gamma, pl_weight)
    if threads < 0:
        raise AtelierError(f"--threads {threads}: give 0 (all CPU threads) or a number of threads")
    if kimg <= 0 or warmup < 0:
        raise AtelierError("--kimg must be above 0 and --warmup 0 or more (thousands of images)")
    cfg = TrainConfig(resolution=resolution, batch=batch, channel_base=cbase, channel_max=cmax,
                      map_layers=map_layers, gamma=gamma, pl_weight=pl_weight, augment=aug, augpipe=augpipe,
                      num_fp16_res=fp16_res, cpu_bf16_res=bf16_res, threads=threads, device=device)
    result = run_bench(cfg, warmup_kimg=warmup, measure_kimg=kimg)
    typer.echo(json.dumps(result) if as_json else format_train_table(result))


@exit_on_user_error
def bench_render(
    network: Optional[Path] = _network_option(),
    batches: str = typer.Option("1,8,32", help="Batch sizes to time."),
    repeats: int = typer.Option(3, help="Timed repetitions per row (after one warm-up)."),
    device: str = device_option(),
    precision: str = precision_option(),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Images/s at full and preview resolution, peak memory, the latency of one 6 × 7 review strip, and the share
    of the machine's limit (a 3×3 convolution of the network's shape) the renderer reaches at batch 8.

    --network also takes random:RESxCH, a generator of that shape with random weights (e.g. random:256x512)."""
    from model.benchmarks.bench import bench_render as run_bench, format_render_table
    from model.network.render import configure_threads

    configure_threads()
    try:
        sizes = [int(b) for b in batches.split(",") if b.strip()]
    except ValueError:
        raise AtelierError(f"--batches {batches!r}: give whole numbers separated by commas, e.g. 1,8,32") from None
    if not sizes or min(sizes) < 1:
        raise AtelierError(f"--batches {batches!r}: give at least one batch size of 1 or more, e.g. 1,8,32")
    if repeats < 1:
        raise AtelierError(f"--repeats {repeats}: time each row at least once (3 is the default)")
    result = run_bench(network, sizes, repeats=repeats, device=device, precision=precision)
    typer.echo(json.dumps(result) if as_json else format_render_table(result))


@exit_on_user_error
def bench_gpu(
    out: Optional[Path] = typer.Option(None, help="Write the JSON here (a file, or a folder for gpu-check.json)."),
    as_json: bool = typer.Option(False, "--json", help="Print the JSON instead of a summary."),
) -> None:
    """On a machine with a GPU: CUDA float32 and float16 rendering against CPU float32 (demo model and a 256-px /
    512-channel random network), and GPU throughput. Without a GPU it says so (and writes that) and exits 0."""
    from model.benchmarks.gpu_check import format_gpu_check, run_gpu_check
    from model.network.render import configure_threads

    configure_threads()
    result = run_gpu_check(out)
    typer.echo(json.dumps(result, indent=2) if as_json else format_gpu_check(result))


@exit_on_user_error
def runs(
    run: Optional[Path] = typer.Argument(None, help="A run folder (or a run's name under --root): its details."),
    root: Optional[Path] = typer.Option(None, help="Where runs are listed from (default: ATELIER_RUNS, else "
                                                   "~/.cache/atelier/runs)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List training runs (progress, best snapshot), or show one with the command that continues it."""
    from model.training.runs import list_runs, read_run, run_record
    from core.settings import runs_dir, shipped_runs_dir, shown_path

    # Without --root, the runs that ship in the checkout (the demo model's) are listed after your own.
    shipped = None if root is not None else shipped_runs_dir()
    root = root or runs_dir()
    if run is None:
        found = list_runs(root)
        found += [r for r in (list_runs(shipped) if shipped else []) if r.name not in {x.name for x in found}]
        if as_json:
            typer.echo(json.dumps([run_record(r) for r in found]))
            return
        if not found:
            typer.echo(f"no training runs in {shown_path(root)}; start one with `atelier train`")
        for r in found:
            target = f" of {r.target_kimg:g}" if r.target_kimg else ""
            best = f", best {r.best['frechet']:.1f} at {r.best.get('kimg', 0):g} kimg" if r.best else ""
            typer.echo(f"{r.name}: {r.kimg:g}{target} kimg{best}  ({shown_path(r.path)})")
        return
    folder = run if run.is_dir() or run.is_absolute() else root / run
    if not folder.exists() and shipped is not None and (shipped / run).is_dir():
        folder = shipped / run
    summary = read_run(folder)
    if as_json:
        typer.echo(json.dumps(run_record(summary)))
        return
    record = run_record(summary)
    for key in ("path", "kimg", "target_kimg", "best", "newest_snapshot", "samples"):
        typer.echo(f"{key}: {record[key]}")
    typer.echo(f"continue with:\n  {record['resume_command']}")


def register(app: typer.Typer) -> None:
    """Add this package's sub-commands to the root `atelier` app."""
    app.command("generate")(generate)
    app.command("convert")(convert)
    app.command("info")(info)
    app.command("train")(train)
    app.command("runs")(runs)
    bench_app.command("render")(bench_render)
    bench_app.command("train")(bench_train)
    bench_app.command("gpu")(bench_gpu)
    app.add_typer(bench_app, name="bench")
