"""``atelier eval-model``: how far a generator's samples are from the real synthetic looks, as the factor
predictor reads both (TV per factor, spread ratios, Fréchet distance against a real-vs-real baseline)."""
from __future__ import annotations

from typing import Callable

from model.evaluation.distributions import (factor_histograms, frechet_distance, gaussian_stats, spread_ratios,
                                            tv_from_histograms)
from model.evaluation.predictor import REAL_SEED0, Predictor
from model.evaluation.samples import generated_predictions, real_predictions, synthetic_classes


def eval_model(renderer, predictor: Predictor, samples: int = 10_000, progress: Callable[[int], None] | None = None
               ) -> dict:
    """TV per factor (generated vs held-out real, both as the predictor reads them) and Fréchet distances."""
    gen = generated_predictions(predictor, renderer, samples, progress=progress,
                                classes=synthetic_classes(renderer, samples, REAL_SEED0))
    real_a = real_predictions(predictor, samples, REAL_SEED0, progress=progress)
    real_b = real_predictions(predictor, samples, REAL_SEED0 + samples, progress=progress)
    gen_values, real_values = gen.values(), real_a.values()
    hist_gen, hist_real = factor_histograms(gen_values), factor_histograms(real_values)
    tv = tv_from_histograms(hist_gen, hist_real)
    mu_g, cov_g = gaussian_stats(gen.features)
    mu_a, cov_a = gaussian_stats(real_a.features)
    mu_b, cov_b = gaussian_stats(real_b.features)
    return {"tv": {k: round(v, 4) for k, v in tv.items()},
            "frechet": round(frechet_distance(mu_g, cov_g, mu_a, cov_a), 4),
            "frechet_real_baseline": round(frechet_distance(mu_a, cov_a, mu_b, cov_b), 4),
            "spread": spread_ratios(gen_values, real_values),
            "histograms": {name: {"generated": hist_gen[name].tolist(), "real": hist_real[name].tolist()}
                           for name in tv},
            "samples": samples, "network": str(getattr(renderer.network, "source", "")),
            "kimg": getattr(renderer.network, "kimg", None)}


def format_eval(result: dict) -> str:
    lines = [f"network {result['network']} (kimg {result['kimg']}), {result['samples']} samples",
             f"{'factor':<12} {'TV':>6}        {'spread':>6}  (TV target ≤ 0.15; spread: generated sd / real sd)"]
    spread = result.get("spread", {})
    for name, value in result["tv"].items():
        ratio = spread.get(name)
        note = "" if ratio is None else f"{ratio:>6.2f}" + ("  too narrow" if ratio < 0.8 else
                                                             "  too wide" if ratio > 1.25 else "")
        lines.append(f"{name:<12} {value:>6.3f}  {'ok  ' if value <= 0.15 else 'over'}  {note}".rstrip())
    lines.append(f"Fréchet distance (predictor features): {result['frechet']:.3f}; "
                 f"real-vs-real baseline: {result['frechet_real_baseline']:.3f}")
    return "\n".join(lines)
