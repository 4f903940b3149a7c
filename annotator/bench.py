"""`atelier bench app`: the latency of what the pages do, measured without a browser.

- approve → next strip visible: record the review, read the queue, fetch the next strip (prefetched into the
  strip cache while the reviewer looked at the current one) and read its bytes;
- Generate slider move → new image: w of the seed (cached), synthesis with the edits, JPEG encoding.
"""
from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


def _stats(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"median_s": round(statistics.median(ordered), 4), "max_s": round(ordered[-1], 4),
            "p90_s": round(ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))], 4), "n": len(ordered)}


def bench_app(network: str | Path | None = None, reviews: int = 8, moves: int = 20) -> dict:
    import os

    from workflows import registry
    from annotator import generate, review, services, strips
    from db import queries as q
    from db.engine import read_session, write_session

    with tempfile.TemporaryDirectory(prefix="atelier-bench-app-") as home:
        old = {k: os.environ.get(k) for k in ("ATELIER_HOME", "ATELIER_MODEL", "ATELIER_DATABASE_URL")}
        os.environ["ATELIER_HOME"] = home
        os.environ.pop("ATELIER_DATABASE_URL", None)
        if network is not None:
            os.environ["ATELIER_MODEL"] = str(Path(network).resolve())
        try:
            started = time.perf_counter()
            ctx = services.bootstrap(score_in_background=False)
            bootstrap_s = time.perf_counter() - started
            renderer = registry.renderer_for(ctx.model)
            cset = ctx.component_set
            assert cset is not None
            with write_session(ctx.url) as session:
                q.ensure_reviewer(session, "bench")
            settings = review.StripSettings()

            def request_for(component_id: int):
                with read_session(ctx.url) as session:
                    component = q.get_component(session, component_id)
                    vector = q.component_vector(session, component_id)
                return review.strip_request(ctx, component, vector, settings, renderer, cset.review_seeds)

            # Cold strip (what a reviewer waits for without prefetch), for reference.
            items = review.queue(ctx.url, "bench", cset.id)
            started = time.perf_counter()
            strips.get_strip(request_for(items[0].component_id), renderer)
            cold_strip_s = time.perf_counter() - started

            approve_samples = []
            for _ in range(reviews):
                items = review.queue(ctx.url, "bench", cset.id)
                current = items[0].component_id
                # What the page does while the reviewer looks at the current strip: prefetch the next two.
                strips.prefetcher().submit([request_for(cid) for cid in review.upcoming(items, current, 2)], renderer)
                strips.prefetcher().wait(timeout=120)
                started = time.perf_counter()
                review.record(ctx.url, "bench", current, "approve", review.ReviewForm(label="bench label"))
                queue = review.queue(ctx.url, "bench", cset.id)
                following = [i.component_id for i in queue if i.component_id != current]
                shown = strips.get_strip(request_for(following[0]), renderer)
                assert shown.grid and shown.heat
                approve_samples.append(time.perf_counter() - started)

            # Generate: one published direction, slider moved step by step.
            with write_session(ctx.url) as session:
                component = q.list_components(session, cset.id)[0]
                direction = q.publish_direction(session, ctx.model.id, "bench direction", "bench",
                                                component_id=component.id)
            available = generate.sliders([direction], lambda d: services.direction_sigma(d, ctx.url))
            generate.render_jpeg(renderer, generate.LookState(seed=42), available)  # warm: model, ws cache
            move_samples = []
            for value in np.linspace(-3, 3, moves):
                look = generate.LookState(seed=42, psi=0.7, values=((direction.id, round(float(value), 2)),))
                started = time.perf_counter()
                jpeg = generate.render_jpeg(renderer, look, available)
                assert jpeg[:2] == b"\xff\xd8"
                move_samples.append(time.perf_counter() - started)
        finally:
            for key, value in old.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
    import torch

    return {"network": str(ctx.model.path), "resolution": renderer.resolution, "device": str(renderer.device),
            "threads": torch.get_num_threads(), "bootstrap_s": round(bootstrap_s, 3),
            "cold_strip_s": round(cold_strip_s, 4), "approve_to_next_strip": _stats(approve_samples),
            "slider_to_image": _stats(move_samples),
            "targets": {"approve_to_next_strip_s": 0.5, "slider_to_image_s": 0.3}}


def format_app_table(result: dict) -> str:
    a, s = result["approve_to_next_strip"], result["slider_to_image"]
    ok = lambda value, target: "ok" if value <= target else "SLOW"  # noqa: E731
    return "\n".join([
        f"network {result['network']} ({result['resolution']} px) on {result['device']} ({result['threads']} threads)",
        f"first start (migrate, register, SeFa + σ): {result['bootstrap_s']:.2f} s; a strip rendered cold: "
        f"{result['cold_strip_s'] * 1000:.0f} ms",
        f"approve → next strip visible: median {a['median_s'] * 1000:.0f} ms, max {a['max_s'] * 1000:.0f} ms "
        f"(target 500 ms: {ok(a['max_s'], 0.5)})",
        f"Generate slider → new image:  median {s['median_s'] * 1000:.0f} ms, max {s['max_s'] * 1000:.0f} ms "
        f"(target 300 ms: {ok(s['max_s'], 0.3)})",
    ])


# --- the review loop on a real-size network ------------------------------------------------------------------------

QUEUE_READY = 32  # components scored before the queue is "useful": the first screenful of the Review order
STRIP_SEEDS, STRIP_STEPS = 6, 7


@dataclass
class ScoringTimes:
    """When each batch of `atelier score`'s scorer finished: (components scored so far, seconds since the start).
    A two-pass scorer counts the quick pass over every component, then the refined ones again."""
    batches: list[tuple[int, float]] = field(default_factory=list)

    def seconds_until(self, count: int) -> float:
        """Seconds until at least `count` components had scores (the queue is placed by them from then on)."""
        return next(t for done, t in self.batches if done >= count)


def time_scoring(renderer, vectors: np.ndarray, sigmas: np.ndarray, refine: int | None) -> ScoringTimes:
    """Score as `atelier score` does (its resolution rule, its two passes), timing each batch."""
    from model.directions import scores

    times, done, started = ScoringTimes(), 0, time.perf_counter()

    def on_batch(batch: list) -> None:
        nonlocal done
        done += len(batch)
        times.batches.append((done, time.perf_counter() - started))

    scores.score_set(renderer, vectors, sigmas, resolution=scores.scoring_resolution(renderer), on_batch=on_batch,
                     refine=refine)
    return times


def all_scored_seconds(times: ScoringTimes, count: int, total: int, refine: int | None) -> float:
    """Seconds to score all `total` components, from a run over the first `count`: measured when count == total;
    otherwise the first pass scaled by total / count and the refine pass (a fixed number of components) scaled by
    how many it refines of the whole set against of the `count`."""
    finished = times.batches[-1][1]
    if count == total:
        return finished
    first_pass = times.seconds_until(count)
    refined_here, refined_all = min(refine or 0, count), min(refine or 0, total)
    rest = (finished - first_pass) * (refined_all / refined_here if refined_here else 0.0)
    return first_pass * total / count + rest


def _timed(fn):
    started = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - started


def _strip_times(renderer, vector: np.ndarray, sigma: float) -> dict:
    """A Review-page strip (6 seeds × 7 σ steps at the page's strip resolution): time to its first view, to the
    full strip (cold: nothing cached), and from the cache."""
    from annotator import strips
    from model.directions.strips import StripCache, StripSpec, sigma_steps, strip_resolution

    spec = StripSpec("bench", 0, tuple(range(STRIP_SEEDS)), sigma_steps(STRIP_STEPS, 3.0),
                     resolution=strip_resolution(renderer))
    with tempfile.TemporaryDirectory(prefix="atelier-bench-review-") as tmp:
        cache = StripCache(tmp, draw=strips.draw_for_page, suffixes=strips.SUFFIXES)
        started = time.perf_counter()
        views = []
        for view in cache.render_progressively(renderer, vector, sigma, spec):
            views.append((view, time.perf_counter() - started))
        hit, cached_s = _timed(lambda: cache.lookup(renderer.picture_identity, spec))
        if hit is None:
            raise RuntimeError(f"the strip cache in {tmp} did not keep the strip it just wrote")
    first = views[0][1] if len(views) > 1 else None
    return {"resolution": spec.resolution or renderer.resolution, "cold_s": round(views[-1][1], 3),
            "first_view_s": None if first is None else round(first, 3), "cached_s": round(cached_s, 5)}


def _generate_times(renderer, vector: np.ndarray, sigma: float, repeats: int = 3) -> dict:
    """One Generate image: a seed's look with one slider moved, at full resolution, encoded as JPEG. Cold is the
    first (the mapping of that seed included); then the best of `repeats` slider moves."""
    from annotator import imaging
    from model.network.render import Edit

    def render(value: float) -> bytes:
        image = renderer.render_seeds([42], psi=0.7, edits=[Edit(vector, value * sigma)])[0]
        return imaging.to_jpeg(image, quality=92)

    _, cold = _timed(lambda: render(1.0))
    moves = [_timed(lambda v=v: render(v))[1] for v in np.linspace(-2, 2, repeats)]
    return {"cold_s": round(cold, 3), "slider_move_s": round(min(moves), 3)}


def bench_review(network: str | Path | None = None, device: str | None = "auto", precision: str | None = "auto",
                 components: int | None = None, sigma_samples: int = 20_000) -> dict:
    """What a reviewer waits for on `network` (a file, None for the demo model, or random:RESxCH): the queue ready
    (32 components with scores, scored as `atelier score` scores: eigenvalue order, two passes when the set has more
    than 128 components), every component scored, a strip cold and cached, a Generate image, and the process's peak
    memory. `components` scores only the first N and extrapolates the whole set."""
    import torch

    from model.directions import discovery as D, scores
    from model.benchmarks.bench import bench_network, peak_rss_mb
    from model.network.render import Renderer

    renderer, load_s = _timed(lambda: Renderer(bench_network(network), device=device, precision=precision))

    def discover():
        w, _ = D.sample_w(renderer, sigma_samples)
        return D.sefa(renderer.G, "all", w_samples=w, fingerprint=renderer.fingerprint)

    cs, discover_s = _timed(discover)  # SeFa: largest eigenvalue first, the order scoring follows
    total = len(cs.vectors)
    count = total if not components else min(components, total)
    first = min(QUEUE_READY, count)
    refine = scores.scoring_passes(renderer, total)  # what `atelier score` does with the whole set
    times = time_scoring(renderer, cs.vectors[:count], cs.sigmas[:count], refine)
    resolution = scores.scoring_resolution(renderer)
    result = {"network": str(renderer.network.source), "resolution": renderer.resolution,
              "device": str(renderer.device), "precision": renderer.precision, "threads": torch.get_num_threads(),
              "load_s": round(load_s, 2), "discover_s": round(discover_s, 2), "components": total,
              "scoring_resolution": resolution or renderer.resolution, "queue_ready_components": first,
              "queue_ready_s": round(times.seconds_until(first), 2), "scored_components": count,
              "refined_components": min(refine or 0, total),
              "all_scored_s": round(all_scored_seconds(times, count, total, refine), 1),
              "all_scored_estimated": count < total,
              "strip": _strip_times(renderer, cs.vectors[0], float(cs.sigmas[0])),
              "generate": _generate_times(renderer, cs.vectors[0], float(cs.sigmas[0])),
              "peak_rss_mb": round(peak_rss_mb(), 1),
              "targets": {"queue_ready_s": 60, "all_scored_s": 600}}
    if renderer.device.type == "cuda":
        result["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated(renderer.device) / 2 ** 20, 1)
    return result


def format_review_table(result: dict) -> str:
    strip, gen = result["strip"], result["generate"]
    estimated = " (extrapolated from the first %d)" % result["scored_components"] if result["all_scored_estimated"] \
        else ""
    first_view = f", first view {strip['first_view_s']:.2f} s" if strip["first_view_s"] is not None else ""
    memory = f"peak RSS {result['peak_rss_mb']:.0f} MB"
    if "peak_cuda_mb" in result:
        memory += f", peak GPU {result['peak_cuda_mb']:.0f} MB"
    return "\n".join([
        f"network {result['network']} ({result['resolution']} px) on {result['device']} ({result['threads']} "
        f"threads), {result['precision']}; load {result['load_s']:.1f} s, SeFa + σ {result['discover_s']:.1f} s",
        f"queue ready ({result['queue_ready_components']} components with scores, rendered at "
        f"{result['scoring_resolution']} px): {result['queue_ready_s']:.1f} s (target 60 s)",
        f"of which refined in a second pass: {result['refined_components']}",
        f"all {result['components']} scored: {result['all_scored_s']:.0f} s{estimated} (target 600 s)",
        f"strip {STRIP_SEEDS} × {STRIP_STEPS} at {strip['resolution']} px: cold {strip['cold_s']:.2f} s{first_view}, "
        f"cached {strip['cached_s'] * 1000:.1f} ms",
        f"Generate image at {result['resolution']} px: cold {gen['cold_s']:.2f} s, slider move "
        f"{gen['slider_move_s']:.2f} s; {memory}",
    ])
