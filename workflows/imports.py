"""Import of direction sets: a file (Atelier's own format, or GANSpace, InterFaceGAN and the old notebooks' SeFa
via :mod:`model.directions.importers`) into the database, as a set to review or as published directions.

Import is two steps, so a page or the CLI can show what will happen before anything is written: :func:`plan_import`
reads and validates the file (:mod:`model.directions.set_reader`) and compares it with the database;
:func:`apply_import` writes it in one transaction. Both ``atelier import`` and the Directions & export page call them.
"""
from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from core.errors import AtelierError
from core.names import check_direction_name
from db import accounts, queries
from db.engine import read_session, write_session
from workflows.sliders import direction_sigma
from model.directions import importers
from model.directions.set_format import (
    FORMAT_NAME,
    FORMAT_VERSION,
    IMPORT_KEY,
    SCORE_KEYS,
    DirectionMeta,
    DirectionSet,
    DirectionSetError,
    iso_utc,
    json_pair,
    original_indices,
    strip_import,
)
from model.directions.set_reader import parse_direction_set, read_source

# --------------------------------------------------------------------------------------------------------------
# Import: plan (read-only) and apply (one transaction)


@dataclass(frozen=True)
class PlanItem:
    """One line of an import plan. action: add-category, add-reviewer, add-set, reuse-set, add-reviews, publish,
    replace (unpublish the current direction of that name, publish the file's), unchanged, provenance (team mode:
    the file's people, kept beside the importer's rows)."""

    action: str
    name: str
    detail: str = ""


@dataclass
class ImportPlan:
    """What an import would do; show :meth:`summary` (or the items) and call :func:`apply_import` to write it."""

    source: str
    kind: str  # "atelier", "ganspace", "interfacegan", "sefa-legacy", or "unknown" when unreadable
    target_fingerprint: str | None
    force: bool = False
    publish: bool = False
    direction_set: DirectionSet | None = field(default=None, repr=False)
    items: list[PlanItem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    model_name: str | None = None

    @property
    def ok(self) -> bool:
        return not self.errors

    def counts(self) -> dict[str, int]:
        return dict(Counter(item.action for item in self.items))

    def summary(self, include_errors: bool = True) -> str:
        kinds = {"atelier": "Atelier direction set", "ganspace": "GANSpace components",
                 "interfacegan": "InterFaceGAN boundary", "sefa-legacy": "SeFa factors (old notebooks)"}
        target = f"model {self.model_name!r}" if self.model_name else "the model"
        lines = [f"Import {self.source} ({kinds.get(self.kind, 'unrecognised file')}) into {target}:"]
        marks = {"unchanged": "=", "replace": "~", "reuse-set": "="}
        lines += [f"  {marks.get(i.action, '+')} {i.action} {i.name}{': ' + i.detail if i.detail else ''}"
                  for i in self.items]
        if not self.items and self.ok:
            lines.append("  nothing to do")
        lines += [f"warning: {w}" for w in self.warnings]
        if include_errors:
            lines += [f"error: {e}" for e in self.errors]
        return "\n".join(lines)


@dataclass
class ImportResult:
    component_set_ids: list[int]
    published: list[str]
    replaced: list[str]
    reviews: int
    unchanged: int


@dataclass
class _NewComponent:
    original_index: int
    vector: np.ndarray
    sigma: float
    scores: dict[str, Any] | None
    reviews: list[dict[str, Any]]


@dataclass
class _SetAction:
    key: str
    method: str
    params: dict[str, Any]
    sample_count: int
    review_seeds: list[int]
    components: list[_NewComponent]
    existing_id: int | None = None  # a set already in the database holding these components
    component_ids: dict[int, int] = field(default_factory=dict)  # original index -> component id


@dataclass
class _Resolution:
    categories: list[str] = field(default_factory=list)
    reviewers: list[str] = field(default_factory=list)
    sets: list[_SetAction] = field(default_factory=list)
    publishes: list[tuple[int, int | None]] = field(default_factory=list)  # (direction index, id to replace)
    items: list[PlanItem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    unchanged: int = 0


def _describe(meta: DirectionMeta) -> str:
    parts = [meta.category or "no category"]
    if meta.layer_range is not None:
        parts.append(f"layers {meta.layer_range[0]}–{meta.layer_range[1]}")
    if meta.strength_range is not None:
        parts.append(f"{meta.strength_range[0]:g} to {meta.strength_range[1]:g} σ")
    parts.append(f"σ {meta.sigma:.4g}")
    return ", ".join(parts)


def _file_set(ds: DirectionSet, key: str, entry: dict[str, Any], members: list[int],
              warnings: list[str]) -> _SetAction:
    """One component set of the file as a set to add: its components by original index, each once (two directions
    sharing a component keep the first one's vector, with a warning). Pure."""
    components: dict[int, _NewComponent] = {}
    for i in members:
        meta = ds.directions[i]
        index = meta.source["index"]
        if index in components:
            if not np.array_equal(components[index].vector, ds.vectors[i]):
                warnings.append(f"{ds.names[i]!r} and another direction share component {index} of set "
                                f"{key} but have different vectors; the component keeps the first")
            continue
        components[index] = _NewComponent(index, ds.vectors[i], meta.sigma, meta.scores,
                                          list((meta.reviews or {}).get("by_reviewer", [])))
    ordered = [components[i] for i in sorted(components)]
    return _SetAction(key, entry["method"], dict(entry["params"]), entry["sample_count"],
                      list(entry["review_seeds"]), ordered)


def _find_existing_set(session: Session, action: _SetAction, candidates: list[Any]) -> None:
    """Point the action at the first set (by id) that already holds exactly these vectors, if any: re-importing is
    then a no-op."""
    for candidate in candidates:
        if (candidate.method != action.method or strip_import(candidate.params) != strip_import(action.params)
                or candidate.sample_count != action.sample_count):
            continue
        originals = {o: i for i, o in original_indices(candidate).items()}
        db_components = {c.index: c for c in queries.list_components(session, candidate.id)}
        matched: dict[int, int] = {}
        for comp in action.components:
            db_index = originals.get(comp.original_index)
            if db_index is None or db_index not in db_components:
                break
            stored = queries.component_vector(session, db_components[db_index].id)
            if stored.tobytes() != np.asarray(comp.vector, np.float32).tobytes():
                break
            matched[comp.original_index] = db_components[db_index].id
        else:
            action.existing_id, action.component_ids = candidate.id, matched
            return


def _plan_set(session: Session, action: _SetAction, res: _Resolution) -> None:
    """The plan line for one set; for a reused set, a warning for each review in the file the database differs on."""
    ordered = action.components
    if action.existing_id is None:
        reviews = sum(len(c.reviews) for c in ordered)
        detail = f"{action.method}, {len(ordered)} component(s)"
        detail += f", {reviews} review(s)" if reviews else ", to review"
        res.items.append(PlanItem("add-set", action.key, detail))
        return
    res.items.append(PlanItem("reuse-set", action.key, f"{action.method}: its {len(ordered)} component(s) are "
                                                       f"already in set {action.existing_id}"))
    votes = queries.latest_votes(session, action.existing_id)
    for comp in ordered:
        current = {r.reviewer: r for r in votes.get(action.component_ids[comp.original_index], [])}
        for review in comp.reviews:
            mine = current.get(review["reviewer"])
            if mine is None or mine.decision != review["decision"] or mine.label != review["label"]:
                res.warnings.append(
                    f"{review['reviewer']}'s review of component {comp.original_index} ({action.key}) in the file "
                    f"({review['decision']}) differs from the database's "
                    f"({'none' if mine is None else mine.decision}); the database's is kept")


def _plan_publications(session: Session, ds: DirectionSet, model: Any, res: _Resolution) -> None:
    """Each published direction of the file: publish it, replace the one of that name, or leave it unchanged."""
    current = {d.name: d for d in queries.active_directions(session, model.id)}
    set_actions = {a.key: a for a in res.sets}
    for i, meta in enumerate(ds.directions):
        if not meta.published:
            continue
        existing = current.get(meta.name)
        if existing is None:
            res.items.append(PlanItem("publish", repr(meta.name), _describe(meta)))
            res.publishes.append((i, None))
            continue
        component_id = None
        if meta.source["kind"] == "component":
            component_id = set_actions[meta.source["set"]].component_ids.get(meta.source["index"])
        same = (existing.vector.tobytes() == ds.vectors[i].tobytes() and existing.layer_range == meta.layer_range
                and existing.strength_range == meta.strength_range and existing.category == meta.category
                and existing.component_id == component_id
                and direction_sigma(session, existing) == meta.sigma)
        if same:
            res.items.append(PlanItem("unchanged", repr(meta.name), "already published as in the file"))
            res.unchanged += 1
            continue
        res.items.append(PlanItem("replace", repr(meta.name), "unpublish the current one (it differs) and "
                                                              "publish the file's: " + _describe(meta)))
        res.publishes.append((i, existing.id))


def _names_in_new_rows(ds: DirectionSet, res: _Resolution) -> tuple[list[str], list[str]]:
    """The categories and people the new reviews and publications name, first mention first, repeats kept. Pure."""
    categories: list[str] = []
    reviewers: list[str] = []
    for action in res.sets:
        if action.existing_id is None:
            for review in (r for comp in action.components for r in comp.reviews):
                reviewers.append(review["reviewer"])
                categories += [review["category"]] if review["category"] else []
    for i, _ in res.publishes:
        meta = ds.directions[i]
        categories += [meta.category] if meta.category else []
        reviewers += [meta.published_by] if meta.published_by else []
    return categories, reviewers


def _plan_names(session: Session, ds: DirectionSet, res: _Resolution) -> None:
    """Categories and reviewers that the new reviews and publications need and the database lacks, planned first."""
    categories, reviewers = _names_in_new_rows(ds, res)
    active = {c.name for c in queries.list_categories(session)}
    retired = {c.name for c in queries.list_categories(session, include_retired=True)} - active
    known = {r.name for r in queries.list_reviewers(session)}
    res.categories = [name for name in dict.fromkeys(categories) if name not in active]
    # A team database makes no names for the file's people: the importer's rows keep them as provenance.
    team = accounts.team_mode(session)
    res.reviewers = [] if team else [name for name in dict.fromkeys(reviewers) if name not in known]
    res.items[:0] = (
        [PlanItem("add-category", repr(name), "restore the retired category" if name in retired
                  else "not in this database's taxonomy yet") for name in res.categories]
        + [PlanItem("add-reviewer", repr(name)) for name in res.reviewers]
        + ([PlanItem("provenance", ", ".join(repr(n) for n in dict.fromkeys(reviewers)),
                     "kept as who reviewed or published originally; the rows are the importer's, dated now")]
           if team and reviewers else [])
    )


def _resolve(session: Session, ds: DirectionSet, model: Any) -> _Resolution:
    """Compare a validated set with the database: what to add, reuse, publish, replace. Reads only."""
    res = _Resolution()
    by_set: dict[str, list[int]] = {}
    for i, meta in enumerate(ds.directions):
        if meta.source["kind"] == "component":
            by_set.setdefault(meta.source["set"], []).append(i)
    candidates = sorted(queries.list_component_sets(session, model.id), key=lambda s: s.id)
    for entry in ds.metadata["component_sets"]:
        members = by_set.get(entry["key"], [])
        if not members:
            continue
        action = _file_set(ds, entry["key"], entry, members, res.warnings)
        _find_existing_set(session, action, candidates)
        _plan_set(session, action, res)
        res.sets.append(action)
    _plan_publications(session, ds, model, res)
    _plan_names(session, ds, res)
    return res


def _check_model(ds: DirectionSet, model: Any, force: bool, plan: ImportPlan) -> None:
    """Whether the set fits the target model: other dimensions are errors, other weights an error unless ``force``
    (then a warning). Pure."""
    arch = model.architecture
    for key in ("w_dim", "num_ws"):
        mine, theirs = int(arch[key]), ds.architecture.get(key)
        if theirs is not None and mine != theirs:
            plan.errors.append(f"the file is for a model with {key} {theirs}, but {model.name!r} has {key} {mine}; "
                               f"its directions cannot apply to this model")
    if ds.fingerprint is None:
        return
    if ds.fingerprint != model.fingerprint:
        other = ds.metadata["model"].get("name")
        message = (f"the file was exported from a different model ({other!r}, fingerprint {ds.fingerprint[:12]}…) "
                   f"than {model.name!r} ({model.fingerprint[:12]}…)")
        if force:
            plan.warnings.append(message + "; importing anyway (--force): check the directions look right")
        else:
            plan.errors.append(message + ". If it is a fine-tuned copy whose directions still apply, import again "
                                         "with --force")
        for key in ("z_dim", "resolution"):
            mine = int(arch.get(key if key != "resolution" else "img_resolution", 0) or 0)
            theirs = ds.architecture.get(key)
            if theirs and mine and mine != theirs:
                plan.warnings.append(f"the file's model has {key} {theirs}, this one {mine}")


def _read_file(source: Any, label: str | None, plan: ImportPlan,
               naming: bool) -> tuple[DirectionSet | None, importers.RawDirections | None]:
    """The file, recognised by content and validated: an Atelier set, or a foreign file's raw vectors. Records its
    name and kind in the plan; ``naming`` (--publish or --names given) warns for an Atelier set. Pure."""
    data, plan.source = read_source(source, label)
    plan.kind = importers.detect_kind(data, plan.source)
    if plan.kind != "atelier":
        return None, importers.read_raw(data, plan.kind, plan.source)
    ds = parse_direction_set(data, plan.source)
    if naming:
        plan.warnings.append("--publish and --names apply to GANSpace, InterFaceGAN and SeFa files; an "
                             "Atelier set publishes what it says is published")
    return ds, None


def plan_import(source: Any, target_model_fingerprint: str | None = None, force: bool = False, *,
                url: str | None = None, publish: bool = False, names: Sequence[str] | None = None,
                renderer: Any = None, filename: str | None = None) -> ImportPlan:
    """Read and validate a file (path, bytes or upload) and say what importing it into the target model would do.

    Atelier ``.zip`` sets, GANSpace ``.npz``, InterFaceGAN ``.npy`` and old SeFa ``torch.save`` files are
    recognised by content. Foreign files become a new component set to review; with ``publish`` their
    directions are also published (named ``names`` or ``<method>_000``…). ``renderer`` (the target model) gives
    σ for InterFaceGAN and SeFa files, which do not carry it. ``target_model_fingerprint`` defaults to the
    file's model. Nothing is written; problems are in ``plan.errors`` rather than raised.
    """
    label = filename or (Path(source).name if isinstance(source, (str, Path)) else None)
    plan = ImportPlan(source=label or "upload", kind="unknown", target_fingerprint=target_model_fingerprint,
                      force=force, publish=publish)
    try:
        ds, raw = _read_file(source, label, plan, bool(publish or names))
        fingerprint = target_model_fingerprint or (ds.fingerprint if ds is not None else None)
        if fingerprint is None:
            raise DirectionSetError(f"{plan.source} does not say which model it belongs to: choose the target "
                                    f"model (--model)")
        plan.target_fingerprint = fingerprint
        with read_session(url) as session:
            model = queries.model_by_fingerprint(session, fingerprint)
            if model is None:
                raise DirectionSetError(f"no model with fingerprint {fingerprint[:12]}… is registered in this "
                                        f"database: register it first (atelier import --network FILE, or run "
                                        f"discovery on it)")
            plan.model_name = model.name
            if raw is not None:
                ds = _raw_to_set(raw, model, publish, names, renderer, plan)
            _check_model(ds, model, force, plan)
            plan.direction_set = ds
            if plan.errors:
                return plan
            resolution = _resolve(session, ds, model)
    except AtelierError as exc:
        plan.errors.append(str(exc))
        return plan
    plan.items, plan.warnings = resolution.items, plan.warnings + resolution.warnings
    plan.errors += resolution.errors
    return plan


def _foreign_sigmas(raw: importers.RawDirections, model: Any, renderer: Any, plan: ImportPlan) -> np.ndarray:
    """σ per vector: the file's; else measured on ``renderer`` when it is the target model; else 1.0, with a
    warning. Records which in the set's params."""
    if raw.sigmas is not None:
        return raw.sigmas
    if renderer is not None and renderer.fingerprint == model.fingerprint:
        sigmas = importers.sigmas_from_model(renderer, raw.vectors)
        raw.params["sigma_source"] = "model samples"
        return sigmas
    raw.params["sigma_source"] = "none (1.0)"
    plan.warnings.append(f"{plan.source} does not carry σ and the model file is not available, so σ is 1.0: "
                         f"a slider step of 1 moves w by one unit, not one standard deviation")
    return np.ones(raw.vectors.shape[0])


def _foreign_names(raw: importers.RawDirections, names: Sequence[str] | None, source: str) -> list[str]:
    """The names given (one per vector, trimmed) or the file's defaults; unique and by the direction-name rule."""
    n = raw.vectors.shape[0]
    if names:
        chosen = [str(x).strip() for x in names]
        if len(chosen) != n:
            raise DirectionSetError(f"{len(chosen)} name(s) given for {n} direction(s) in {source}; give one "
                                    f"name per direction")
    else:
        chosen = list(raw.default_names)
    if len(set(chosen)) != len(chosen):
        raise DirectionSetError("the names given are not unique")
    for name in chosen:
        check_direction_name(name)
    return chosen


def _raw_to_set(raw: importers.RawDirections, model: Any, publish: bool, names: Sequence[str] | None,
                renderer: Any, plan: ImportPlan) -> DirectionSet:
    """A foreign file's vectors as a one-set DirectionSet for the target model (validated like a file). Pure (the
    renderer, if any, only measures σ)."""
    arch = model.architecture
    w_dim, num_ws = int(arch["w_dim"]), int(arch["num_ws"])
    n = raw.vectors.shape[0]
    if raw.vectors.shape[1] != w_dim:
        raise DirectionSetError(f"{plan.source} has vectors of length {raw.vectors.shape[1]}, but model "
                                f"{model.name!r} has w_dim {w_dim}; the file is for another model")
    plan.warnings.extend(raw.notes)
    sigmas = _foreign_sigmas(raw, model, renderer, plan)
    chosen = _foreign_names(raw, names, plan.source)
    metas = [
        DirectionMeta(
            name=chosen[i], status="published" if publish else "unreviewed", category=None,
            source={"kind": "component", "set": "s1", "method": raw.method, "index": i},
            layer_range=(0, num_ws) if publish else None,
            strength_range=(-3.0, 3.0) if publish else None, sigma=float(sigmas[i]),
            reviews=None,
            scores=None if raw.eigenvalues is None else {**{k: None for k in SCORE_KEYS}, "dead": None,
                                                          "eigenvalue": float(raw.eigenvalues[i])},
        )
        for i in range(n)
    ]
    for meta in metas:
        if not math.isfinite(meta.sigma) or meta.sigma < 0:
            raise DirectionSetError(f"{plan.source}: σ of {meta.name!r} is {meta.sigma}; it must be a finite "
                                    f"number >= 0")
    doc = {
        "format": FORMAT_NAME, "format_version": FORMAT_VERSION, "selection": "published",
        "model": {"name": None, "fingerprint": None,
                  "architecture": {"z_dim": int(arch.get("z_dim", 0) or 0), "w_dim": w_dim, "num_ws": num_ws,
                                   "resolution": int(arch.get("img_resolution", 0) or 0)}},
        "component_sets": [{"key": "s1", "method": raw.method, "params": raw.params, "sample_count": 0,
                            "review_seeds": [], "agreement": {"decision_alpha": None, "category_alpha": None,
                                                              "decision_units": 0, "category_units": 0}}],
        "directions": [
            {"name": m.name, "status": m.status, "category": None, "source": dict(m.source),
             "layer_range": json_pair(m.layer_range, int), "strength_range": json_pair(m.strength_range, float),
             "sigma": m.sigma, "reviews": None, "scores": m.scores, "published_by": None, "published_at": None,
             "preview": None}
            for m in metas
        ],
    }
    return DirectionSet(names=chosen, vectors=raw.vectors.astype(np.float32), metadata=doc, directions=metas)


@dataclass(frozen=True)
class _Writer:
    """Who writes an import and how: the importer's name, team mode (the file's people become provenance), the
    file's name and the time every added set records."""

    importer: str
    team: bool
    source: str
    imported_at: str | None


def _new_set_params(action: _SetAction, plan: ImportPlan, ds: DirectionSet, writer: _Writer) -> dict[str, Any]:
    """A new set's params: the file's, plus where it came from (``IMPORT_KEY``: file, original indices, who and
    when). Pure."""
    return {**strip_import(action.params),
            IMPORT_KEY: {"file": plan.source, "kind": plan.kind,
                         "indices": [c.original_index for c in action.components],
                         "source_fingerprint": ds.fingerprint, "imported_by": writer.importer,
                         "imported_at": writer.imported_at}}


def _eigenvalues(action: _SetAction) -> list[float] | None:
    """The components' eigenvalues, all or none (the database stores all or none). Pure."""
    eigen = [None if c.scores is None else c.scores.get("eigenvalue") for c in action.components]
    if any(e is None for e in eigen) and any(e is not None for e in eigen):
        raise DirectionSetError(f"set {action.key}: some components have an eigenvalue and some do not; "
                                f"the database stores all or none. Nothing was written")
    return None if eigen[0] is None else eigen


def _score_rows(action: _SetAction) -> list[dict[str, Any]]:
    """The scores to store per component index, beside the eigenvalue (stored with the set). Pure."""
    rows = []
    for i, comp in enumerate(action.components):
        scores = {k: v for k, v in (comp.scores or {}).items() if k != "eigenvalue" and v is not None}
        if scores:
            rows.append({"index": i, **scores})
    return rows


def _add_set(session: Session, model: Any, action: _SetAction, plan: ImportPlan, ds: DirectionSet,
             writer: _Writer, result: ImportResult) -> None:
    """Store a new set, its scores and its reviews (in the team mode, as the importer's with provenance)."""
    comps = action.components
    eigenvalues = _eigenvalues(action)
    info = queries.add_component_set(
        session, model.id, action.method, _new_set_params(action, plan, ds, writer), action.sample_count,
        np.stack([c.vector for c in comps]), [c.sigma for c in comps], eigenvalues=eigenvalues,
        review_seeds=action.review_seeds)
    result.component_set_ids.append(info.id)
    ids = {c.index: c.id for c in queries.list_components(session, info.id)}
    action.component_ids = {c.original_index: ids[i] for i, c in enumerate(comps)}
    rows = _score_rows(action)
    if rows:
        queries.update_scores(session, info.id, rows)
    for comp in comps:
        for review in comp.reviews:
            queries.record_review(
                session, writer.importer if writer.team else review["reviewer"],
                action.component_ids[comp.original_index], review["decision"],
                label=review["label"], category=review["category"], consistency=review["consistency"],
                layer_range=None if review["layer_range"] is None else tuple(review["layer_range"]),
                strength_range=None if review["strength_range"] is None else tuple(review["strength_range"]),
                note=review["note"],
                provenance={"reviewer": review["reviewer"], "file": writer.source} if writer.team else None)
            result.reviews += 1


def _publish(session: Session, model: Any, ds: DirectionSet, res: _Resolution, writer: _Writer,
             result: ImportResult) -> None:
    """Publish the file's published directions, unpublishing the ones they replace first."""
    set_actions = {a.key: a for a in res.sets}
    for i, replace_id in res.publishes:
        meta = ds.directions[i]
        if replace_id is not None:
            queries.unpublish_direction(session, replace_id, writer.importer)
            result.replaced.append(meta.name)
        component_id = None
        if meta.source["kind"] == "component":
            component_id = set_actions[meta.source["set"]].component_ids[meta.source["index"]]
        # A restored direction keeps its σ and, on one person's machine, when it was really published (not
        # "now"); in team mode the importer publishes it now and the file's claims are provenance.
        original_at = None if meta.published_at is None else datetime.fromisoformat(meta.published_at)
        queries.publish_direction(
            session, model.id, meta.name, writer.importer if writer.team else (meta.published_by or writer.importer),
            component_id=component_id, vector=ds.vectors[i], category=meta.category,
            layer_range=meta.layer_range, strength_range=meta.strength_range, sigma=meta.sigma,
            published_at=None if writer.team else original_at,
            provenance={"published_by": meta.published_by, "published_at": meta.published_at,
                        "file": writer.source} if writer.team else None)
        result.published.append(meta.name)


def _resolve_again(session: Session, plan: ImportPlan, ds: DirectionSet) -> tuple[Any, _Resolution]:
    """The target model and the plan compared with the database as it is now (it may have changed since)."""
    model = queries.model_by_fingerprint(session, plan.target_fingerprint or "")
    if model is None:
        raise DirectionSetError("the target model is no longer registered; nothing was written")
    check = ImportPlan(plan.source, plan.kind, plan.target_fingerprint, plan.force)
    _check_model(ds, model, plan.force, check)
    if check.errors:
        raise DirectionSetError("; ".join(check.errors) + "; nothing was written")
    res = _resolve(session, ds, model)
    if res.errors:
        raise DirectionSetError("; ".join(res.errors) + "; nothing was written")
    return model, res


def apply_import(plan: ImportPlan, url: str | None = None, reviewer: str = "import") -> ImportResult:
    """Write a plan in one transaction: if anything fails, nothing is written.

    ``reviewer`` is the person importing: they unpublish replaced directions and publish directions whose file
    does not say who published them (foreign files with ``publish``). The database is compared again here, so a
    plan made a while ago still applies correctly.
    """
    if not plan.ok or plan.direction_set is None:
        raise DirectionSetError("the import has problems; nothing was written:\n- " + "\n- ".join(plan.errors))
    ds = plan.direction_set
    result = ImportResult([], [], [], 0, 0)
    with write_session(url) as session:
        model, res = _resolve_again(session, plan, ds)
        # In team mode the importer must be an admin account, and the file's reviewers and publishers are kept only
        # as provenance: no accounts are made for them, their reviews and publications become the importer's, dated
        # now (a file can claim any name and any date). On one person's machine names are only labels, as before.
        team = accounts.team_mode(session)
        if team:
            accounts.require_admin(session, reviewer, "import directions")
        importer = queries.ensure_reviewer(session, reviewer).name
        for name in res.categories:
            queries.add_category(session, name)
        for name in [] if team else res.reviewers:
            queries.ensure_reviewer(session, name)
        writer = _Writer(importer, team, plan.source, iso_utc(datetime.now(timezone.utc)))
        for action in res.sets:
            if action.existing_id is None:
                _add_set(session, model, action, plan, ds, writer, result)
        _publish(session, model, ds, res, writer, result)
        result.unchanged = res.unchanged
    return result
