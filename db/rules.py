"""What the database accepts: the checks every write makes, the review vocabularies, and the rule for changing state.

Each ``check_*`` names the field, the bad value and what is allowed, and raises :class:`~core.errors.InvalidInput`
before anything is written; none of them reads a table. :func:`apply_if_unchanged` is how ``db.queries`` and
``db.accounts`` write every state change, so that of two people changing the same row at once one is told.
"""
from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from core.errors import InvalidInput
from core.settings import min_approvals_setting
from db.schema import MAX_SEED

# The status a component's reviews add up to (db.review_queue.component_statuses), in display order.
STATUSES: tuple[str, ...] = ("approved", "rejected", "conflict", "unsure", "in_review", "unreviewed")
# Decisions that are an opinion about the component; skip and withdrawn are "no opinion (yet)".
VOTES: tuple[str, ...] = ("approve", "reject", "unsure")
DEFAULT_STRENGTH_RANGE: tuple[float, float] = (-3.0, 3.0)
# The automatic scores a component row holds (db.queries.update_scores writes only these).
SCORE_FIELDS: tuple[str, ...] = (
    "effect", "consistency", "locality", "locality_where", "colour_share", "layer_sensitivity",
    "suggested_category", "priority", "dead", "score_details",
)
# A model's fingerprint: the sha256 of its weights as lower-case hex.
FINGERPRINT_PATTERN = re.compile(r"^[0-9a-f]{64}$")


class NotFound(InvalidInput):
    """A reviewer, component, model, ... that does not exist."""


def check_int(name: str, value: Any, low: int | None = None, high: int | None = None) -> int:
    # bool is an int subclass; True as a rating is a bug in the caller, not a 1.
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InvalidInput(f"{name} must be a whole number, got {value!r}.")
    number = int(value)
    if (low is not None and number < low) or (high is not None and number > high):
        raise InvalidInput(f"{name} must be between {low} and {high}, got {number}.")
    return number


def check_float(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InvalidInput(f"{name} must be a number, got {value!r}.")
    number = float(value)
    if not math.isfinite(number):
        raise InvalidInput(f"{name} must be a finite number, got {number}.")
    return number


def check_text(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"{name} must be text, got {type(value).__name__}.")
    return value


MAX_SCORE_DETAILS = 20_000  # characters; the scorer writes well under 2,000


def check_score_details(value: Any) -> str:
    """Score details arrive as a dict (the scorer) or JSON text (an import); stored as JSON text of an object."""
    if isinstance(value, Mapping):
        value = json.dumps(value, sort_keys=True, allow_nan=False)
    text = check_text("score_details", value)
    if len(text) > MAX_SCORE_DETAILS:
        raise InvalidInput(f"score_details is {len(text)} characters long; the limit is {MAX_SCORE_DETAILS}.")
    try:
        parsed = json.loads(text)
    except ValueError as exc:
        raise InvalidInput(f"score_details is not valid JSON ({exc}); re-run `atelier score` to rebuild it.") from None
    if not isinstance(parsed, dict):
        raise InvalidInput("score_details must be a JSON object; re-run `atelier score` to rebuild it.")
    return text


def check_name(name: str, value: Any, max_length: int) -> str:
    text = check_text(name, value).strip()
    if not text:
        raise InvalidInput(f"{name} is empty: type a name.")
    if len(text) > max_length:
        raise InvalidInput(f"{name} is {len(text)} characters long; keep it to {max_length}.")
    return text


def check_layer_range(value: Any, num_ws: int) -> tuple[int, int]:
    try:
        start, end = value
    except (TypeError, ValueError):
        raise InvalidInput(f"layer range must be a pair (start, end), got {value!r}.") from None
    start = check_int("layer range start", start)
    end = check_int("layer range end", end)
    if not 0 <= start < end <= num_ws:
        raise InvalidInput(
            f"layer range ({start}, {end}) is outside this model's {num_ws} ws: pick start < end within "
            f"0..{num_ws} (end is exclusive, so ({0}, {num_ws}) means every layer)."
        )
    return start, end


def check_strength_range(value: Any) -> tuple[float, float]:
    try:
        low, high = value
    except (TypeError, ValueError):
        raise InvalidInput(f"strength range must be a pair (min, max), got {value!r}.") from None
    low = check_float("strength range min", low)
    high = check_float("strength range max", high)
    if high < low:
        raise InvalidInput(f"strength range ({low}, {high}) has max below min: swap them.")
    return low, high


def check_json(name: str, value: Any) -> Any:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"{name} must be plain JSON (numbers, text, lists, dicts): {exc}.") from None
    return value


def check_seeds(value: Iterable[Any]) -> list[int]:
    return [check_int("review seed", seed, 0, MAX_SEED) for seed in value]


def check_vector(name: str, value: Any, w_dim: int) -> np.ndarray:
    array = np.asarray(value, dtype=np.float64)
    if array.shape != (w_dim,):
        raise InvalidInput(f"{name} has shape {array.shape}; this model needs ({w_dim},).")
    if not np.all(np.isfinite(array)):
        raise InvalidInput(f"{name} contains NaN or infinite values; recompute it.")
    return array


def approvals_needed(min_approvals: int | None) -> int:
    """K, the number of agreeing votes that decide a component: the caller's, else the team's setting."""
    return min_approvals_setting() if min_approvals is None else check_int("min_approvals", min_approvals, 1)


def apply_if_unchanged(session: Session, statement: Any) -> bool:
    """Run a conditional UPDATE or DELETE (``WHERE`` the state the caller read) and say whether it hit a row.

    Every state change goes through here rather than "read the row, set attributes, flush": under PostgreSQL's
    READ COMMITTED two transactions can both read the old state, and the second one's plain ``UPDATE … WHERE
    id = ?`` waits for the first and then overwrites it, so both people are told "done". A condition on the old
    state is re-checked after that wait, matches nothing, and the loser gets a message instead.
    """
    result = session.execute(statement.execution_options(synchronize_session=False))
    return bool(result.rowcount)
