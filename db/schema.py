"""The review database's tables, as SQLAlchemy 2.0 typed models.

This module describes the *latest* schema for the ORM. The migrations in ``db/migrations/versions`` are written
out by hand and never import it, so an old revision keeps creating exactly what it created when it shipped.
A test compares the two (``tests/test_db_migrations.py``), so they cannot drift apart silently.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import numpy as np
from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

# Constraint names must be stable and predictable: Alembic's batch mode on SQLite recreates tables and can only
# drop or alter a constraint it can name, and PostgreSQL would otherwise invent names that differ per server.
NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

DECISIONS: tuple[str, ...] = ("approve", "reject", "unsure", "skip")
# Written only by undo when there is no earlier review to restore: "this reviewer has no opinion (any more)".
WITHDRAWN = "withdrawn"
ALL_DECISIONS: tuple[str, ...] = (*DECISIONS, WITHDRAWN)

DEFAULT_CATEGORIES: tuple[str, ...] = (
    "sleeve", "colour", "layers", "length", "neckline", "pattern", "silhouette", "other",
    "background",  # added by revision 0006: the scorer suggests it, so the form must offer it
)

DIRECTION_SOURCES: tuple[str, ...] = ("component", "supervised")

# Added by revision 0005: what an account may do (db/accounts.py). Admins also publish, import and manage models.
ROLES: tuple[str, ...] = ("reviewer", "admin")

MAX_SEED = 2**32 - 1


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend.

    SQLite has no time zones and hands back naive datetimes; PostgreSQL hands back aware ones. Normalising here
    means pages can compare and format timestamps without caring which database the team uses.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; use datetime.now(timezone.utc)")
        return value.astimezone(timezone.utc)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


def vector_to_bytes(vector: np.ndarray) -> bytes:
    """A 1-D vector as little-endian float32 bytes, the on-disk form of every direction."""
    array = np.asarray(vector, dtype="<f4")
    if array.ndim != 1:
        raise ValueError(f"expected a 1-D vector, got shape {array.shape}")
    return array.tobytes()


def vector_from_bytes(blob: bytes, w_dim: int) -> np.ndarray:
    array = np.frombuffer(blob, dtype="<f4")
    if array.shape != (w_dim,):
        raise ValueError(f"stored vector has {array.size} values but w_dim is {w_dim}")
    # frombuffer shares the (immutable) bytes; callers expect an ordinary writable float32 array.
    return array.astype(np.float32)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON,
        list[Any]: JSON,
        bytes: LargeBinary,
        # FLOAT is double precision on PostgreSQL and REAL (8 bytes) on SQLite; the migrations say the same.
        float: Float,
    }


class Model(Base):
    """A registered generator file."""

    __tablename__ = "models"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    path: Mapped[str] = mapped_column(Text)
    # sha256 of the weights: the same file registered twice is recognised, whatever its path.
    fingerprint: Mapped[str] = mapped_column(String(64), unique=True)
    # z_dim, w_dim, num_ws, img_resolution, c_dim.
    architecture: Mapped[dict[str, Any]]
    added_at: Mapped[datetime] = mapped_column(default=utcnow)


class ComponentSet(Base):
    """One run of direction discovery (SeFa, PCA, ...) on one model."""

    __tablename__ = "component_sets"

    id: Mapped[int] = mapped_column(primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"), index=True)
    method: Mapped[str] = mapped_column(String(40))
    params: Mapped[dict[str, Any]]
    sample_count: Mapped[int]
    # The seeds every reviewer sees for this set, so reviewers judge the same looks; "resample" replaces them.
    review_seeds: Mapped[list[Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (CheckConstraint("sample_count >= 0", name="sample_count_nonnegative"),)


class Component(Base):
    """One candidate direction with its automatic scores (nullable until scoring has run)."""

    __tablename__ = "components"

    id: Mapped[int] = mapped_column(primary_key=True)
    set_id: Mapped[int] = mapped_column(ForeignKey("component_sets.id"))
    index: Mapped[int] = mapped_column("component_index")
    w_dim: Mapped[int]
    vector: Mapped[bytes]
    sigma: Mapped[float]
    eigenvalue: Mapped[float | None]
    effect: Mapped[float | None]
    consistency: Mapped[float | None]
    locality: Mapped[float | None]
    locality_where: Mapped[str | None] = mapped_column(Text)
    colour_share: Mapped[float | None]
    layer_sensitivity: Mapped[str | None] = mapped_column(String(20))
    suggested_category: Mapped[str | None] = mapped_column(String(60))
    # Lower comes first in the review queue; NULL (not scored yet) sorts after every scored component.
    priority: Mapped[float | None]
    # Added by revision 0002: a component the scorer found to do nothing visible.
    dead: Mapped[bool] = mapped_column(default=False, server_default=false())
    # Added by revision 0006: the priority's ingredients and reason as JSON
    # (model.directions.scores.ComponentScore.details).
    score_details: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (UniqueConstraint("set_id", "component_index", name="uq_components_set_id_index"),)

    def vector_array(self) -> np.ndarray:
        return vector_from_bytes(self.vector, self.w_dim)


class Reviewer(Base):
    """A person on the team; names are unique. With a password hash (revision 0005) the row is an account."""

    __tablename__ = "reviewers"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # scrypt$N$r$p$salt$key (db/accounts.py); NULL for a name typed in single-user mode, which cannot sign in.
    password_hash: Mapped[str | None] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20), default="reviewer", server_default="reviewer")
    disabled_at: Mapped[datetime | None]
    # Session tokens carry it; a new password or disabling moves it on, which ends every earlier session.
    session_epoch: Mapped[int] = mapped_column(default=0, server_default="0")

    __table_args__ = (CheckConstraint("role IN ('reviewer', 'admin')", name="role_known"),)


class Category(Base):
    """The editable taxonomy; retired categories stay so old reviews keep their meaning."""

    __tablename__ = "categories"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(60), unique=True)
    position: Mapped[int] = mapped_column(default=0)
    retired_at: Mapped[datetime | None]


class Review(Base):
    """One decision by one reviewer on one component. Append-only: edits and undos are new rows."""

    __tablename__ = "reviews"

    id: Mapped[int] = mapped_column(primary_key=True)
    reviewer_id: Mapped[int] = mapped_column(ForeignKey("reviewers.id"))
    component_id: Mapped[int] = mapped_column(ForeignKey("components.id"))
    decision: Mapped[str] = mapped_column(String(12))
    # Stored exactly as typed (HTML and Markdown included); the app shows it as plain text.
    label: Mapped[str] = mapped_column(Text, default="")
    category_id: Mapped[int | None] = mapped_column(ForeignKey("categories.id"))
    consistency: Mapped[int | None]
    # Best layers, end-exclusive, and best strengths in units of the component's sigma.
    layer_start: Mapped[int | None]
    layer_end: Mapped[int | None]
    strength_min: Mapped[float | None]
    strength_max: Mapped[float | None]
    note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    seconds_spent: Mapped[float | None]
    # Set on rows written by undo: the review they take back.
    undoes_id: Mapped[int | None] = mapped_column(ForeignKey("reviews.id"))
    # Added by revision 0005: for a review imported in team mode, who made it originally and where it came from
    # ({"reviewer": ..., "file": ...}); the row itself belongs to the account that imported it.
    provenance: Mapped[dict[str, Any] | None]

    __table_args__ = (
        CheckConstraint(
            "decision IN ('approve', 'reject', 'unsure', 'skip', 'withdrawn')", name="decision_known"
        ),
        CheckConstraint("consistency IS NULL OR (consistency BETWEEN 1 AND 5)", name="consistency_1_to_5"),
        CheckConstraint(
            "(layer_start IS NULL AND layer_end IS NULL)"
            " OR (layer_start >= 0 AND layer_end > layer_start)",
            name="layer_range_valid",
        ),
        CheckConstraint(
            "(strength_min IS NULL AND strength_max IS NULL) OR (strength_max >= strength_min)",
            name="strength_range_valid",
        ),
        CheckConstraint("seconds_spent IS NULL OR seconds_spent >= 0", name="seconds_nonnegative"),
        # "Latest review per reviewer for these components" is the hot query; this index answers it.
        Index("ix_reviews_component_reviewer", "component_id", "reviewer_id", "id"),
        Index("ix_reviews_reviewer_id", "reviewer_id"),
        # Ids must only grow, because "latest" means highest id; SQLite could otherwise reuse a deleted max id.
        {"sqlite_autoincrement": True},
    )


class PublishedDirection(Base):
    """A direction the generate page and the export use. Unpublishing stamps the row; it is never deleted."""

    __tablename__ = "published_directions"

    id: Mapped[int] = mapped_column(primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"))
    name: Mapped[str] = mapped_column(String(200))
    category_id: Mapped[int | None] = mapped_column(ForeignKey("categories.id"))
    w_dim: Mapped[int]
    vector: Mapped[bytes]
    layer_start: Mapped[int]
    layer_end: Mapped[int]
    strength_min: Mapped[float]
    strength_max: Mapped[float]
    # Added by revision 0003: the σ the sliders count in. Publishing from a component stores the component's;
    # NULL (supervised directions published without one) means vector units, i.e. 1.0.
    sigma: Mapped[float | None]
    source: Mapped[str] = mapped_column(String(20))
    component_id: Mapped[int | None] = mapped_column(ForeignKey("components.id"))
    # Added by revision 0004: the mean image change the publish check measured at the slider's ends, and the
    # refusals someone overrode to publish anyway (NULL when there were none), so an override is never silent.
    measured_effect: Mapped[float | None]
    override_reasons: Mapped[list[Any] | None]
    published_by: Mapped[int] = mapped_column(ForeignKey("reviewers.id"))
    published_at: Mapped[datetime] = mapped_column(default=utcnow)
    unpublished_at: Mapped[datetime | None]
    unpublished_by: Mapped[int | None] = mapped_column(ForeignKey("reviewers.id"))
    # Added by revision 0005: for a direction imported in team mode, who published it originally and when
    # ({"published_by": ..., "published_at": ..., "file": ...}); published_by/at are the importer and the import.
    provenance: Mapped[dict[str, Any] | None]

    __table_args__ = (
        CheckConstraint("source IN ('component', 'supervised')", name="source_known"),
        CheckConstraint("layer_start >= 0 AND layer_end > layer_start", name="layer_range_valid"),
        CheckConstraint("strength_max >= strength_min", name="strength_range_valid"),
        # At most one *active* direction per name and model, enforced by the database so two people
        # publishing the same name at once cannot both succeed. History rows (unpublished) are exempt.
        Index(
            "uq_published_directions_active_name",
            "model_id",
            "name",
            unique=True,
            sqlite_where=text("unpublished_at IS NULL"),
            postgresql_where=text("unpublished_at IS NULL"),
        ),
    )

    def vector_array(self) -> np.ndarray:
        return vector_from_bytes(self.vector, self.w_dim)


class Look(Base):
    """A saved design: a seed, truncation, optional class and a list of (direction, value) edits."""

    __tablename__ = "looks"

    id: Mapped[int] = mapped_column(primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    seed: Mapped[int] = mapped_column(BigInteger)
    psi: Mapped[float]
    class_index: Mapped[int | None]
    # [{"direction_id": int | None, "name": str, "value": float}, ...]; looks saved since revision 0004 also keep
    # each edit's exact "vector" (w_dim floats), "layer_range" and "sigma", so re-publishing cannot change them.
    edits: Mapped[list[Any]]
    # Added by revision 0004: the weights the look was designed on (NULL for older looks).
    model_fingerprint: Mapped[str | None] = mapped_column(String(64))
    reviewer_id: Mapped[int] = mapped_column(ForeignKey("reviewers.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (CheckConstraint(f"seed >= 0 AND seed <= {MAX_SEED}", name="seed_uint32"),)
