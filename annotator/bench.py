"""`atelier bench app`: the latency of what the pages do, measured without a browser.

- approve → next strip visible: record the review, read the queue, fetch the next strip (prefetched into the
  strip cache while the reviewer looked at the current one) and read its bytes;
- Generate slider move → new image: w of the seed (cached), synthesis with the edits, JPEG encoding.
"""
from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def _stats(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"median_s": round(statistics.median(ordered), 4), "max_s": round(ordered[-1], 4),
            "p90_s": round(ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))], 4), "n": len(ordered)}


def bench_app(network: str | Path | None = None, reviews: int = 8, moves: int = 20) -> dict:
    import os

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
            renderer = services.renderer_for(ctx.model)
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
