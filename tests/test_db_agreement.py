"""Krippendorff's alpha against worked examples from Krippendorff's own paper."""
from __future__ import annotations

import pytest

from db.agreement import coincidence_matrix, nominal_alpha, nominal_alpha_from_table

N = None

# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", example C: 4 observers, 12 units,
# values 1-5, missing data. The paper gives alpha = 0.743 for nominal data.
PAPER_EXAMPLE_C = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, N, N, N],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, N, 3],
    [N, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, N],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, N],
]

# Same paper, example A: two observers, ten units, binary data; alpha = 0.095.
PAPER_EXAMPLE_A = [
    [0, 1, 0, 0, 0, 0, 0, 0, 1, 0],
    [1, 1, 1, 0, 0, 1, 0, 0, 0, 0],
]


def test_paper_example_with_missing_data() -> None:
    assert nominal_alpha_from_table(PAPER_EXAMPLE_C) == pytest.approx(0.743, abs=5e-4)


def test_paper_coincidence_matrix() -> None:
    units = [[row[u] for row in PAPER_EXAMPLE_C if row[u] is not None] for u in range(12)]
    o, values = coincidence_matrix(units)
    assert values == [1, 2, 3, 4, 5]
    # Unit 12 has a single value and drops out, leaving n = 40 pairable values, as in the paper.
    assert o.sum() == pytest.approx(40.0)
    assert o[0, 0] == pytest.approx(7.0)
    assert o[0, 1] == pytest.approx(4 / 3)
    assert o[1, 1] == pytest.approx(10.0)
    assert o[4, 4] == pytest.approx(3.0)
    assert (o == o.T).all()


def test_paper_binary_example() -> None:
    assert nominal_alpha_from_table(PAPER_EXAMPLE_A) == pytest.approx(0.095, abs=5e-4)


def test_labels_need_not_be_numbers_and_order_does_not_matter() -> None:
    words = {1: "sleeve", 2: "colour", 3: "length", 4: "pattern", 5: "other"}
    units = [[words[v] for v in reversed([row[u] for row in PAPER_EXAMPLE_C]) if v is not None] for u in range(12)]
    assert nominal_alpha(units) == pytest.approx(0.743, abs=5e-4)


def test_perfect_agreement_is_one_and_systematic_disagreement_is_negative() -> None:
    assert nominal_alpha([["a", "a"], ["b", "b", "b"], ["a", "a"]]) == pytest.approx(1.0)
    assert nominal_alpha([["a", "b"], ["b", "a"]]) < 0


def test_undefined_cases_return_none() -> None:
    assert nominal_alpha([]) is None
    assert nominal_alpha([["a"], ["b"]]) is None  # nobody overlaps
    assert nominal_alpha([["a", "a"], ["a", "a"]]) is None  # no variation: agreement cannot beat chance
    assert nominal_alpha_from_table([]) is None


def test_ragged_table_is_refused() -> None:
    with pytest.raises(ValueError, match="one entry per unit"):
        nominal_alpha_from_table([[1, 2], [1]])
