"""`atelier discover`, `strip`, `score`, `eval-model`, `factors train` and `bench discovery`."""
from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Optional

import typer

from cli.model_commands import device_option, precision_option
from core.errors import AtelierError, exit_on_user_error
from core.files import image_format, write_image

factors_app = typer.Typer(help="The synthetic-factor predictor used by eval-model and bench discovery.",
                          no_args_is_help=True)


def _network_option() -> Optional[Path]:
    return typer.Option(None, "--network", "-n", help="Generator .pkl or .safetensors (default: the demo model).")


def _progress(total: int, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="", leave=False)


def _renderer_for(model, network: Optional[Path], device: str = "cpu", precision: str = "float32"):
    from model.network.render import Renderer

    path = network or (Path(model.path) if model.path else None)
    if path is None or not Path(path).exists():
        raise AtelierError(f"the set's model file {model.path!r} is not there; pass --network with the same weights")
    renderer = Renderer(path, device=device, precision=precision)
    if renderer.fingerprint != model.fingerprint:
        raise AtelierError(f"{path} holds different weights than the set was discovered on "
                           f"({renderer.fingerprint[:12]} ≠ {model.fingerprint[:12]}); pass the right --network")
    return renderer


@exit_on_user_error
def discover(
    method: str = typer.Option("sefa", help="sefa | pca | kmeans"),
    layers: str = typer.Option("all", help="SeFa layers: all | coarse | middle | fine | A-B (ws rows, inclusive)."),
    samples: Optional[int] = typer.Option(None, help="Latents to sample (pca: 100,000; sefa σ and kmeans: 20,000)."),
    k: int = typer.Option(16, help="k-means clusters (looks)."),
    seed: int = typer.Option(0, help="Sampling seed."),
    network: Optional[Path] = _network_option(),
    name: Optional[str] = typer.Option(None, help="Model name in the database (default: the file name)."),
    map_points: Optional[int] = typer.Option(None, "--map", help="Also store a 2-D UMAP map of this many sampled "
                                                             "latents (with seeds) for the map page; 0 = none "
                                                             "(default: 5,000 for kmeans, none otherwise)."),
    out: Optional[Path] = typer.Option(None, help="Also write the set to this .npz file."),
    again: bool = typer.Option(False, "--again", help="Store the set even when the database already has the same "
                                                      "components for this model (a second copy to review)."),
) -> None:
    """Find directions in W and store them as a component set; prints the set id."""
    from db.migrate import ensure_current
    from model.directions import discovery as D
    from workflows.components import same_set, store_component_set
    from model.network.render import Renderer, configure_threads

    configure_threads()
    if method not in ("sefa", "pca", "kmeans"):
        raise AtelierError(f"--method must be sefa, pca or kmeans, not {method!r}")
    renderer = Renderer(network, device="cpu")
    if samples is not None and samples < 1:
        raise AtelierError(f"--samples {samples}: sample at least 1 latent (or leave it out for the default)")
    total = samples if samples is not None else (D.DEFAULT_PCA_SAMPLES if method == "pca" else D.SIGMA_SAMPLES)
    with _progress(total, f"{method}: sampling W") as bar:
        cs = D.discover(renderer, method, layers=layers, samples=samples, k=k, seed=seed, progress=bar.update)
    if map_points is None:
        map_points = D.DEFAULT_MAP_POINTS if method == "kmeans" else 0
    if map_points:
        typer.echo(f"embedding {map_points} latents with UMAP …", err=True)
        w, seeds = D.sample_w(renderer, map_points, seed=seed, renderable=True)
        coords, seeds = D.umap_embedding(w, seeds, points=map_points)
        typer.echo(f"map: {D.save_map(renderer.fingerprint, coords, seeds)}", err=True)
    if out:
        cs.save(out)
    ensure_current()
    same = same_set(cs)
    if same is not None and not again:
        raise AtelierError(f"set {same} already holds these {len(cs)} {method} components of this model (same "
                           f"settings, same vectors): review or score that one (atelier score --set {same}), or pass "
                           "--again to store a second copy")
    set_id = store_component_set(cs, renderer, name=name).id
    if same is not None:
        typer.echo(f"note: set {set_id} is a second copy of set {same} (--again)", err=True)
    typer.echo(f"{len(cs)} {method} components in {cs.params['seconds']:.2f} s", err=True)
    typer.echo(str(set_id))


@exit_on_user_error
def strip(
    set_id: int = typer.Option(..., "--set", help="Component set id."),
    component: int = typer.Option(..., "--component", "-k", help="Component index in the set."),
    seeds: Optional[str] = typer.Option(None, help="Seeds (default: the set's review seeds)."),
    steps: int = typer.Option(7, help="Steps from −span σ to +span σ."),
    span: float = typer.Option(3.0, help="Largest step in σ."),
    layers: str = typer.Option("all", help="all | coarse | middle | fine | A-B (ws rows, inclusive)."),
    centred: bool = typer.Option(False, "--centred", help="Remove each seed's own projection first."),
    resolution: Optional[int] = typer.Option(None, help="Render size (default: preview size for large models)."),
    class_index: Optional[int] = typer.Option(None, "--class", help="Class for conditional models."),
    network: Optional[Path] = _network_option(),
    trunc: float = typer.Option(0.7, "--trunc", help="Truncation ψ of the seeds (0.7, as the app's strips; 1 = none)."),
    out: Path = typer.Option(Path("strip.png"), help="Output image (.png, .jpg or .webp)."),
    device: str = device_option(),
    precision: str = precision_option(),
) -> None:
    """Render one component's review strip (seeds × σ steps), through the strip cache."""
    from PIL import Image

    from model.directions import discovery as D
    from core.files import atomic_write_bytes, image_format, write_image
    from model.network.render import configure_threads, parse_seeds
    from model.directions.strips import StripCache, StripSpec, sigma_steps, strip_resolution
    from db.migrate import ensure_current
    from workflows.components import load_set

    image_format(out)  # a name Atelier cannot write is refused before anything is rendered
    if not 0 <= trunc <= 2:
        raise AtelierError(f"--trunc {trunc}: use a ψ from 0 (the average look) to 2; 0.7 is the app's, 1 is none")
    configure_threads()
    ensure_current()
    stored = load_set(set_id)
    info, vectors, sigmas, model = stored.info, stored.vectors, stored.sigmas, stored.model
    if not 0 <= component < len(vectors):
        raise AtelierError(f"component {component} is not in set {set_id} (it has 0 … {len(vectors) - 1})")
    renderer = _renderer_for(model, network, device, precision)
    seed_list = parse_seeds(seeds) if seeds else (info.review_seeds or D.choose_review_seeds(rng_seed=set_id))
    start, stop = D.row_span(renderer.G, D.parse_layers(layers, renderer.num_ws))
    renderer.class_vector(class_index, 1)  # a conditional model needs a valid class: say so before rendering
    spec = StripSpec(str(set_id), component, tuple(seed_list), sigma_steps(steps, span), start, stop, centred,
                     resolution or strip_resolution(renderer),
                     psi=trunc, class_index=class_index)
    t0 = time.perf_counter()
    cached = StripCache().get_or_render(renderer, vectors[component], float(sigmas[component]), spec)
    ms = (time.perf_counter() - t0) * 1000
    if image_format(out) == "JPEG":  # the cache holds JPEG already
        atomic_write_bytes(out, Path(cached.image).read_bytes())
    else:
        write_image(out, Image.open(cached.image))
    typer.echo(f"wrote {out} ({'cached' if cached.cached else 'rendered'} in {ms:.0f} ms; heat map {cached.heatmap})")


@exit_on_user_error
def score(
    set_id: int = typer.Option(..., "--set", help="Component set id."),
    seeds: int = typer.Option(6, help="Seeds per component (seeds 1000 … 1000+N-1)."),
    resolution: Optional[int] = typer.Option(None, help="Render size (default: preview size for large models)."),
    refine: Optional[int] = typer.Option(None, help="Score every component quickly first (both sides, 2 seeds), "
                                                    "then fully only the N the quick pass ranks highest; 0: one full "
                                                    "pass. Default: 128 (one full pass for a set of 128 or fewer)."),
    network: Optional[Path] = _network_option(),
    device: str = device_option(),
    precision: str = precision_option(),
) -> None:
    """Score every component of a set (how visible, consistent and plausible each side of its edit is on every
    layer and on each layer group; the review priority and its reason; effect, locality, colour share, category).
    Components are scored in eigenvalue order and stored a batch at a time, so the queue (`atelier queue`, the
    Review page) uses them as they come."""
    from db.migrate import ensure_current
    from model.network.render import configure_threads
    from workflows.components import load_set, score_and_store, scoring_steps

    if refine is not None and refine < 0:
        raise AtelierError(f"--refine {refine}: use 0 (one full pass) or the number of components to refine")
    if not 2 <= seeds <= 64:
        raise AtelierError(f"--seeds {seeds}: use 2 to 64 (consistency compares seeds, so at least 2; 6 is the "
                           "default)")
    configure_threads()
    ensure_current()
    stored = load_set(set_id)
    renderer = _renderer_for(stored.model, network, device, precision)
    passes = "auto" if refine is None else refine
    steps = scoring_steps(set_id, renderer, passes)
    refined = steps - len(stored.vectors)
    t0 = time.perf_counter()
    with _progress(steps, f"scoring (quick pass, then the top {refined})" if refined else "scoring") as bar:
        scores = score_and_store(set_id, renderer, seeds=range(1000, 1000 + seeds), resolution=resolution,
                                 refine=passes, batch=128, progress=bar.update)
    dead = sum(s.dead for s in scores)
    typer.echo(f"scored {len(scores)} components in {time.perf_counter() - t0:.1f} s ({dead} invisible, left out "
               f"of the queue); `atelier queue --set {set_id}` shows the review order")


@exit_on_user_error
def queue(
    set_id: int = typer.Option(..., "--set", help="Component set id."),
    reviewer: Optional[str] = typer.Option(None, help="Show this reviewer's own queue (what they have not reviewed "
                                                      "yet, skipped ones last), as their Review page does."),
    top: int = typer.Option(0, help="Only the first N (0: all)."),
    include_dead: bool = typer.Option(False, "--include-dead", help="List the components scored as invisible too "
                                                                   "(last)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """The review order exactly as the Review page uses it: position, component, priority, suggested category,
    layers and the reason it sits there."""
    from dataclasses import asdict

    from db.engine import read_session
    from db.migrate import ensure_current
    from db.queries import list_components
    from db.review_queue import queue_entries, scoring_progress

    if top < 0:
        raise AtelierError(f"--top must be 0 (all) or a positive number, not {top}")
    ensure_current()
    with read_session() as session:
        entries = queue_entries(session, set_id, reviewer, top=top or None, include_dead=include_dead)
        scored, total = scoring_progress(list_components(session, set_id))
    if as_json:
        typer.echo(json.dumps({"set": set_id, "reviewer": reviewer, "scored": scored, "components": total,
                               "queue": [asdict(e) for e in entries]}))
        return
    typer.echo(f"set {set_id}: {scored} of {total} components scored"
               + (f"; {reviewer}'s queue" if reviewer else "") + f"; {len(entries)} shown")
    typer.echo(f"{'#':>4} {'comp':>5} {'priority':>8} {'suggested':<11} {'layers':<7} reason")
    for e in entries:
        priority = "—" if e.priority is None else f"{e.priority:.3f}"
        typer.echo(f"{e.position:>4} {e.index:>5} {priority:>8} {(e.suggested_category or '—'):<11} "
                   f"{(e.layers or '—'):<7} {e.reason}" + ("  (skipped)" if e.skipped else ""))


@exit_on_user_error
def eval_model(
    network: Optional[Path] = _network_option(),
    samples: int = typer.Option(10_000, help="Generated and real images per split."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    plot: Optional[Path] = typer.Option(None, help="Also write a PNG of each factor's generated distribution "
                                                   "over the real one."),
) -> None:
    """Factor distributions (TV per factor) and Fréchet distance in the factor predictor's feature space."""
    from model.evaluation.evaluate import eval_model as run_eval, format_eval
    from model.evaluation.predictor import Predictor
    from model.network.render import Renderer, configure_threads

    configure_threads()
    if samples < 10:
        raise AtelierError("--samples must be at least 10")
    if plot is not None:
        image_format(plot, "--plot")  # a bad file name fails now, not after minutes of rendering
    renderer = Renderer(network, device="cpu")
    with _progress(3 * samples, "rendering and predicting") as bar:
        result = run_eval(renderer, Predictor.load(), samples, progress=bar.update)
    if as_json:
        typer.echo(json.dumps({k: result[k] for k in ("tv", "frechet", "frechet_real_baseline")}))
    else:
        typer.echo(format_eval(result))
    if plot is not None:
        from PIL import Image

        from model.evaluation.eval_plot import draw_eval

        write_image(plot, Image.fromarray(draw_eval(result)))
        typer.echo(f"wrote {plot}", err=as_json)


@exit_on_user_error
def factors_train(
    count: int = typer.Option(40_000, help="Synthetic training images."),
    epochs: int = typer.Option(8),
    out: Path = typer.Option(None, help="Output file (default: the shipped "
                                        "model/assets/factor_predictor.safetensors)."),
) -> None:
    """(Re)train the factor predictor on synthetic runway images (CPU: ~14 minutes with one thread)."""
    from model.evaluation.calibration import train_predictor
    from model.evaluation.predictor import PREDICTOR_PATH
    from core.files import check_output_path

    if count < 64 or epochs < 1:
        raise AtelierError(f"--count {count} --epochs {epochs}: train on at least 64 images for at least 1 epoch")
    check_output_path(out or PREDICTOR_PATH, "--out")  # before minutes of training, not after
    predictor = train_predictor(count=count, epochs=epochs, progress=lambda m: typer.echo(m, err=True))
    typer.echo(f"wrote {predictor.save(out or PREDICTOR_PATH)}")


@exit_on_user_error
def factors_calibrate(
    predictor: Path = typer.Option(None, help="Predictor file (default: the shipped one)."),
    count: int = typer.Option(256, help="Synthetic images per factor for the crosstalk calibration."),
) -> None:
    """Recompute a predictor's factor scales and crosstalk (how its readings leak between factors), in place."""
    from model.evaluation.calibration import recalibrate
    from model.evaluation.factor_changes import CROSSTALK_POWER
    from model.evaluation.predictor import FACTORS, PREDICTOR_PATH

    if count < 16:
        raise AtelierError(f"--count {count} is too few images to calibrate on; use 16 or more (default 256)")
    calibrated = recalibrate(predictor or PREDICTOR_PATH, count)
    leak = calibrated.crosstalk.sum(axis=1) - 1
    typer.echo(f"crosstalk (other factors' readings per unit of the edited one's, compared as "
               f"magnitude ** {CROSSTALK_POWER:g}): " +
               ", ".join(f"{n} {v:.2f}" for n, v in zip(FACTORS, leak)))
    typer.echo(f"wrote {predictor or PREDICTOR_PATH}")


@exit_on_user_error
def bench_discovery(
    network: Optional[Path] = _network_option(),
    method: str = typer.Option("sefa", help="Set to benchmark: sefa | pca."),
    pca_samples: int = typer.Option(100_000, help="Samples for the PCA timing."),
    components: int = typer.Option(0, help="Benchmark only the first N components (0: all) for a quick look; "
                                           "the ranks are then within those N."),
    varied_samples: int = typer.Option(1000, help="Generated and real samples compared to decide which factors the "
                                                  "generator varies."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Ground truth (factor predictor on synthetic factors) and speed: SeFa, PCA, strips, scoring, peak memory."""
    from model.directions import discovery as D
    from model.directions.scores import scoring_passes
    from model.benchmarks.bench import peak_rss_mb
    from model.evaluation.benchmark import format_benchmark, ground_truth_benchmark
    from model.evaluation.predictor import Predictor
    from model.network.render import Renderer, configure_threads
    from model.directions.strips import StripCache, StripSpec, sigma_steps

    if method not in ("sefa", "pca"):
        raise AtelierError(f"--method must be sefa or pca, not {method!r}")
    if components < 0:
        raise AtelierError(f"--components must be 0 (all) or a positive number, not {components}")
    if varied_samples < 2:
        raise AtelierError(f"--varied-samples must be at least 2 to measure a spread, not {varied_samples}")
    configure_threads()
    renderer = Renderer(network, device="cpu")
    predictor = Predictor.load()
    speed: dict[str, float] = {}
    w, _ = D.sample_w(renderer, D.SIGMA_SAMPLES)
    t0 = time.perf_counter()
    sefa_set = D.sefa(renderer.G, "all", w_samples=w, fingerprint=renderer.fingerprint)
    speed["sefa_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    pca_set = D.pca(renderer, n=pca_samples)
    speed["pca_s"] = time.perf_counter() - t0
    cs = sefa_set if method == "sefa" else pca_set
    vectors, sigmas = (cs.vectors[:components], cs.sigmas[:components]) if components else (cs.vectors, cs.sigmas)
    with tempfile.TemporaryDirectory() as tmp:
        cache = StripCache(tmp)
        spec = StripSpec("bench", 0, tuple(range(6)), sigma_steps(7, 3.0))
        renderer.synthesize(renderer.ws_from_seeds([0]))  # warm-up
        t0 = time.perf_counter()
        cache.get_or_render(renderer, cs.vectors[0], float(cs.sigmas[0]), spec)
        speed["strip_uncached_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        hit = cache.get_or_render(renderer, cs.vectors[0], float(cs.sigmas[0]), spec)
        speed["strip_cached_s"] = time.perf_counter() - t0
        if not hit.cached:  # the timing above would then be of a render, not of the cache
            raise AtelierError(f"the strip cache in {tmp} did not keep the strip it just wrote; check the disk")
    steps = len(vectors) + (scoring_passes(renderer, len(vectors)) or 0)
    with _progress(steps, "scoring") as bar, _progress(2 * len(vectors), "ground truth") as truth_bar:
        result = ground_truth_benchmark(renderer, predictor, vectors, sigmas, progress=bar.update,
                                        truth_progress=truth_bar.update, varied_samples=varied_samples)
    speed["scoring_s"] = result["scoring_seconds"]
    speed["peak_rss_mb"] = peak_rss_mb()
    out = {"factors": result["factors"], "spearman": result["spearman"], "ordering": result["ordering"],
           "categories": result["categories"],
           "speed": {k: round(v, 4) for k, v in speed.items()}, "method": method, "components": len(vectors),
           "network": str(renderer.network.source), "kimg": renderer.network.kimg}
    if as_json:
        typer.echo(json.dumps(out))
        return
    typer.echo(f"network {out['network']} (kimg {out['kimg']}), {method}, {len(vectors)} components")
    typer.echo(format_benchmark(result))
    typer.echo(f"SeFa {speed['sefa_s']:.2f} s; PCA on {pca_samples:,} samples {speed['pca_s']:.1f} s; strip 6×7 "
               f"uncached {speed['strip_uncached_s'] * 1000:.0f} ms, cached {speed['strip_cached_s'] * 1000:.1f} ms; "
               f"scoring {len(vectors)} components {speed['scoring_s']:.1f} s; "
               f"peak memory {speed['peak_rss_mb']:.0f} MB")


def register(app: typer.Typer) -> None:
    from cli.model_commands import bench_app

    app.command("discover")(discover)
    app.command("strip")(strip)
    app.command("score")(score)
    app.command("queue")(queue)
    app.command("eval-model")(eval_model)
    factors_app.command("train")(factors_train)
    factors_app.command("calibrate")(factors_calibrate)
    app.add_typer(factors_app, name="factors")
    bench_app.command("discovery")(bench_discovery)
