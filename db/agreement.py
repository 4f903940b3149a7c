"""Krippendorff's alpha for nominal data, from scratch with numpy.

Why alpha and not Cohen's or Fleiss' kappa: the team is any number of people and nobody reviews everything, so
ratings are missing all over the place. Alpha takes any number of coders and simply uses, per unit, the values
that exist; a unit rated by fewer than two people carries no information about agreement and drops out.

    alpha = 1 - D_observed / D_expected

With the coincidence matrix o (o[c, k] = how often value c was paired with value k inside a unit, each unit's
m_u values forming m_u (m_u - 1) ordered pairs weighted 1 / (m_u - 1)) and n_c = sum_k o[c, k], n = sum_c n_c,
for nominal data this is

    alpha = 1 - (n - 1) * sum_{c != k} o[c, k] / sum_{c != k} n_c n_k

(Krippendorff, "Computing Krippendorff's Alpha-Reliability", 2011.)
"""
from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence

import numpy as np


def coincidence_matrix(units: Iterable[Sequence[Hashable]]) -> tuple[np.ndarray, list[Hashable]]:
    """The coincidence matrix over the pairable units and the values its rows and columns stand for.

    ``units``: for each unit, the values given to it (missing ratings already left out). Order within a unit
    does not matter, nor which coder gave which value: nominal alpha only looks at the values that meet.
    """
    pairable = [list(values) for values in units if len(values) >= 2]
    # Sorted by repr so the matrix layout is deterministic whatever the value types; it does not affect alpha.
    values = sorted({value for unit in pairable for value in unit}, key=repr)
    position = {value: i for i, value in enumerate(values)}
    counts = np.zeros((len(pairable), len(values)), dtype=np.float64)
    for row, unit in enumerate(pairable):
        for value in unit:
            counts[row, position[value]] += 1.0
    if not pairable:
        return np.zeros((0, 0)), values
    m = counts.sum(axis=1)
    # Per unit: n_uc n_uk counts ordered pairs of *different* ratings only once we take away the pairing of
    # each rating with itself (the diagonal n_uc); each unit's pairs are weighted 1 / (m_u - 1).
    weights = 1.0 / (m - 1.0)
    pairs = np.einsum("u,uc,uk->ck", weights, counts, counts) - np.diag((counts * weights[:, None]).sum(axis=0))
    return pairs, values


def nominal_alpha(units: Iterable[Sequence[Hashable]]) -> float | None:
    """Krippendorff's alpha for nominal values, or None when it is undefined.

    Undefined means fewer than two pairable ratings, or no variation at all (everyone always chose the same
    value): then agreement cannot be told apart from chance, and a number would mislead.
    """
    o, _values = coincidence_matrix(units)
    if o.size == 0:
        return None
    n_c = o.sum(axis=1)
    n = n_c.sum()
    disagreement_observed = o.sum() - np.trace(o)
    disagreement_expected = n * n - float((n_c * n_c).sum())
    if n <= 1 or disagreement_expected <= 0:
        return None
    return float(1.0 - (n - 1.0) * disagreement_observed / disagreement_expected)


def nominal_alpha_from_table(table: Sequence[Sequence[Hashable | None]]) -> float | None:
    """Alpha from a coders x units table with None for missing ratings (the layout papers print)."""
    if not table:
        return None
    width = len(table[0])
    if any(len(row) != width for row in table):
        raise ValueError("every coder's row must have one entry per unit (None where missing)")
    units = [[row[u] for row in table if row[u] is not None] for u in range(width)]
    return nominal_alpha(units)
