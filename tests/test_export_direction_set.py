"""Export of the labelled direction set: round trip, same pixels as the app, schema, CSV, previews, CLI."""
from __future__ import annotations

import csv
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from conftest import assert_clean_user_error
from db import queries
from db.engine import read_session, write_session
from db.migrate import ensure_current
from db.schema import PublishedDirection
from direction_fixtures import _close_engines, architecture, fresh_db, members, populate, runner  # noqa: F401
from model.directions.set_format import (
    JSON_MEMBER,
    LABELS_MEMBER,
    VECTORS_MEMBER,
    DirectionSetError,
    edit_for,
    labels_csv,
)
from model.directions.set_reader import load_direction_set
from workflows.export import export_direction_set
from workflows.imports import apply_import, plan_import
from workflows.sliders import direction_edit

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "docs" / "direction-set.schema.json"


@pytest.fixture(scope="module")
def renderer(reference_dir):
    """The reference network; one torch thread while it renders (the CI box's cores are shared and oversubscribed
    threads make these tiny renders 100x slower), restored afterwards."""
    import torch

    from model.network.render import Renderer

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield Renderer(reference_dir / "sg2ada_tiny32.pkl", device="cpu")
    torch.set_num_threads(threads)


@pytest.fixture
def source(tmp_path, renderer):
    url, model_id = fresh_db(tmp_path / "source.db", renderer.fingerprint, architecture(renderer))
    populate(url, model_id, renderer.w_dim, renderer.num_ws)
    return url, model_id


@pytest.mark.parametrize("all_reviewed", [False, True], ids=["published", "all-reviewed"])
def test_round_trip_into_fresh_database_is_identical(tmp_path, renderer, source, all_reviewed):
    url, model_id = source
    first = export_direction_set(url, model_id, all_reviewed=all_reviewed)
    target_url, target_id = fresh_db(tmp_path / "target.db", renderer.fingerprint, architecture(renderer))

    plan = plan_import(first, renderer.fingerprint, url=target_url)
    assert plan.ok, plan.summary()
    actions = plan.counts()
    assert actions["publish"] == 4 and actions["add-set"] == 2 and actions["add-category"] == 1  # "prints"
    assert actions["add-reviewer"] == 3
    result = apply_import(plan, target_url, "importer")
    assert sorted(result.published) == ["-Hemline", "Colour: red", "Sleeve length", "Volume"]

    second = export_direction_set(target_url, target_id, all_reviewed=all_reviewed)
    a, b = members(first), members(second)
    assert json.loads(a[JSON_MEMBER]) == json.loads(b[JSON_MEMBER])  # readable diff if this ever fails
    one, two = load_direction_set(first), load_direction_set(second)
    assert one.names == two.names
    assert one.vectors.dtype == np.float32 and one.vectors.tobytes() == two.vectors.tobytes()
    assert first == second  # the whole zip, byte for byte

    doc = one.metadata
    sleeve = one.direction("Sleeve length")
    assert sleeve.source == {"kind": "component", "set": "s1", "method": "sefa", "index": 0}
    assert sleeve.layer_range == (0, renderer.num_ws // 2) and sleeve.strength_range == (-2.0, 2.5)
    assert sleeve.sigma == 2.0 and sleeve.published_by == "ana"
    reviews = sleeve.reviews
    assert reviews["status"] == "conflict" and reviews["decisions"] == {"ana": "approve", "ben": "approve",
                                                                          "cleo": "reject"}
    assert reviews["agreement"] == pytest.approx(2 / 3) and reviews["mean_consistency"] == 4.5
    assert [r["reviewer"] for r in reviews["by_reviewer"]] == ["ana", "ben", "cleo"]
    assert sleeve.scores["effect"] == 0.5 and sleeve.scores["eigenvalue"] == 9.0
    assert one.direction("-Hemline").source == {"kind": "supervised"} and one.direction("-Hemline").sigma == 1.0
    assert "Old" not in one.names  # unpublished history is not exported
    assert [s["method"] for s in doc["component_sets"]] == ["sefa", "pca"]
    if all_reviewed:
        statuses = {d.name: d.status for d in one.directions if not d.published}
        # component 4 was only skipped and component 5's approval was undone: no votes, not exported
        assert statuses == {"sefa_s1_002": "rejected", "sefa_s1_003": "unsure", "pca_s2_002": "rejected"}
    else:
        assert all(d.published for d in one.directions)


def test_importing_an_export_into_its_own_database_changes_nothing(source):
    url, model_id = source
    data = export_direction_set(url, model_id, all_reviewed=True)
    plan = plan_import(data, None, url=url)
    assert plan.ok and set(plan.counts()) == {"reuse-set", "unchanged"}, plan.summary()
    result = apply_import(plan, url, "ana")
    assert result.component_set_ids == [] and result.published == [] and result.unchanged == 4
    assert export_direction_set(url, model_id, all_reviewed=True) == data


def test_file_and_database_direction_render_identical_pixels(tmp_path, renderer, source):
    url, model_id = source
    path = export_direction_set(url, model_id, tmp_path / "set.zip")
    assert isinstance(path, Path) and path.is_file()
    ds = load_direction_set(path)
    seeds, values = [3, 1234], {"Sleeve length": 1.5, "Colour: red": -2.0, "-Hemline": 0.75}
    with read_session(url) as session:
        by_name = {d.name: d for d in queries.active_directions(session, model_id)}
        app_edits = [direction_edit(session, by_name[name], value) for name, value in values.items()]
    from_db = renderer.render_seeds(seeds, psi=0.7, edits=app_edits)
    from_file = renderer.render_seeds(seeds, psi=0.7, edits=ds.edits(values))
    plain = renderer.render_seeds(seeds, psi=0.7)
    assert np.array_equal(from_db, from_file)
    assert not np.array_equal(from_file, plain)  # the edits do something visible
    # The arithmetic: value * σ rounded to float32 once, on the direction's layer range.
    edit = ds.edit("Sleeve length", 1.5)
    assert edit.strength == float(np.float32(1.5 * 2.0)) and (edit.layer_start, edit.layer_stop) == (0, 4)
    assert edit_for([1.0, 0.0], 0.1, 3.0).strength == float(np.float32(0.3))


def test_export_follows_the_json_schema(source):
    import jsonschema
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    url, model_id = source
    for all_reviewed in (False, True):
        doc = json.loads(members(export_direction_set(url, model_id, all_reviewed=all_reviewed))[JSON_MEMBER])
        errors = sorted(validator.iter_errors(doc), key=str)
        assert not errors, errors[0]
    bad = json.loads(json.dumps(doc))
    bad["directions"][0]["name"] = "a/b"
    assert any("pattern" in e.message or "does not match" in e.message for e in validator.iter_errors(bad))
    bad["directions"][0]["name"] = "ok"
    bad["format_version"] = 2
    assert list(validator.iter_errors(bad))


def test_labels_csv_has_one_row_per_direction_and_no_formulas(source):
    url, model_id = source
    data = members(export_direction_set(url, model_id, all_reviewed=True))
    text = data[LABELS_MEMBER].decode("utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["name"] for r in rows] == [d["name"] if not d["name"].startswith("-") else "'" + d["name"]
                                         for d in json.loads(data[JSON_MEMBER])["directions"]]
    sleeve = next(r for r in rows if r["name"] == "Sleeve length")
    assert sleeve["status"] == "published" and sleeve["label"] == "long sleeves"
    assert sleeve["reviewers"] == "ana: approve; ben: approve; cleo: reject" and sleeve["sigma"] == "2.0"
    assert sleeve["strength_min"] == "-2.0"  # numbers are not escaped, text is

    # Every text a person typed that a spreadsheet would run as a formula comes out escaped, whichever column.
    doc = json.loads(data[JSON_MEMBER])
    typed = {"name": "=HYPERLINK(\"x\")", "category": "+prints", "label": "@SUM(A1)", "published_by": "-ana"}
    first = doc["directions"][0]
    first["name"], first["category"], first["published_by"] = typed["name"], typed["category"], typed["published_by"]
    first["reviews"] = dict(first["reviews"] or {}, label=typed["label"])
    row = next(csv.DictReader(io.StringIO(labels_csv(doc).decode("utf-8-sig"))))
    assert {key: row[key] for key in typed} == {key: "'" + text for key, text in typed.items()}


def test_export_is_deterministic_and_written_atomically(tmp_path, source):
    url, model_id = source
    out = tmp_path / "out" / "set.zip"
    export_direction_set(url, model_id, out)
    export_direction_set(url, model_id, out)  # replaces the file
    assert out.read_bytes() == export_direction_set(url, model_id)
    assert [p.name for p in out.parent.iterdir()] == ["set.zip"]  # no temporary files left behind
    with zipfile.ZipFile(out) as zf:
        assert zf.namelist() == [JSON_MEMBER, VECTORS_MEMBER, LABELS_MEMBER]
        assert {info.date_time for info in zf.infolist()} == {(1980, 1, 1, 0, 0, 0)}


def test_previews_are_strips_and_survive_the_round_trip(tmp_path, renderer, source):
    from PIL import Image

    url, model_id = source
    data = export_direction_set(url, model_id, include_previews=True, renderer=renderer)
    ds = load_direction_set(data)
    assert [d.preview for d in ds.directions] == [f"previews/{i:03d}.jpg" for i in range(len(ds))]
    strip = Image.open(io.BytesIO(ds.previews["previews/000.jpg"]))
    assert strip.format == "JPEG" and strip.width > strip.height  # 5 steps across, 3 seeds down
    target_url, target_id = fresh_db(tmp_path / "target.db", renderer.fingerprint, architecture(renderer))
    apply_import(plan_import(data, renderer.fingerprint, url=target_url), target_url, "importer")
    assert export_direction_set(target_url, target_id, include_previews=True, renderer=renderer) == data


def test_export_refuses_what_it_cannot_write(tmp_path, renderer):
    url, model_id = fresh_db(tmp_path / "empty.db", renderer.fingerprint, architecture(renderer))
    with pytest.raises(DirectionSetError, match="no published directions.*--all-reviewed"):
        export_direction_set(url, model_id)
    with write_session(url) as s:
        queries.add_reviewer(s, "ana")
        with pytest.raises(queries.InvalidInput, match="Cannot publish: .*path separator"):
            queries.publish_direction(s, model_id, "sleeves/long", "ana", vector=np.ones(renderer.w_dim))
        # Publishing refuses such names now; a row written before that rule still reaches the export.
        legacy = queries.publish_direction(s, model_id, "sleeves-long", "ana", vector=np.ones(renderer.w_dim))
        s.get(PublishedDirection, legacy.id).name = "sleeves/long"
    with pytest.raises(DirectionSetError, match="path separator.*publish it again under another name"):
        export_direction_set(url, model_id)
    other = "cd" * 32
    with write_session(url) as s:
        second = queries.register_model(s, "other", "other.pkl", other, architecture(renderer))
        queries.publish_direction(s, second.id, "fine", "ana", vector=np.ones(renderer.w_dim))
    with pytest.raises(DirectionSetError, match="other weights than model 'other'"):
        export_direction_set(url, second.id, include_previews=True, renderer=renderer)


def test_cli_export(tmp_path, source):
    from cli.main import app

    url, _ = source
    out = tmp_path / "cli.zip"
    result = runner.invoke(app, ["export", "--out", str(out), "--database", url])
    assert result.exit_code == 0, result.output
    assert "wrote 4 direction(s) (4 published)" in result.output and out.is_file()
    result = runner.invoke(app, ["export", "--out", str(out), "--all-reviewed", "--model", "tiny", "--database", url])
    assert result.exit_code == 0 and "wrote 7 direction(s) (4 published)" in result.output
    result = runner.invoke(app, ["export", "--out", str(tmp_path / "x.tar"), "--database", url])
    assert result.exit_code == 1 and "must end in .zip" in result.output
    result = runner.invoke(app, ["export", "--out", str(out), "--model", "nope", "--database", url])
    assert_clean_user_error(result, "no model matches 'nope'")


def test_cli_import_into_an_empty_database_registers_the_network(tmp_path, reference_dir, source):
    from cli.main import app

    url, model_id = source
    path = export_direction_set(url, model_id, tmp_path / "team.zip", all_reviewed=True)
    empty = f"sqlite:///{tmp_path / 'empty.db'}"
    result = runner.invoke(app, ["import", str(path), "--database", empty, "--yes"])
    assert result.exit_code == 1 and "register it first" in result.output
    result = runner.invoke(app, ["import", str(path), "--database", empty, "--yes", "--reviewer", "ana",
                                 "--network", str(reference_dir / "sg2ada_tiny32.pkl")])
    assert result.exit_code == 0, result.output
    assert "registered model 'sg2ada_tiny32'" in result.output and "4 published" in result.output
    with read_session(empty) as s:
        (model,) = queries.list_models(s)
    assert model.path.endswith("sg2ada_tiny32.pkl")
    # Registered under the file's name rather than "tiny": everything but model.name comes back the same.
    again = load_direction_set(export_direction_set(empty, model.id, all_reviewed=True))
    original = load_direction_set(path)
    assert again.metadata["model"]["name"] == "sg2ada_tiny32"
    again.metadata["model"]["name"] = original.metadata["model"]["name"]
    assert again.metadata == original.metadata and again.vectors.tobytes() == original.vectors.tobytes()


@pytest.mark.postgres
def test_round_trip_through_postgresql(tmp_path, renderer, source):
    from db_fixtures import postgres_base_url, postgres_schema

    url, model_id = source
    first = export_direction_set(url, model_id, all_reviewed=True)
    with postgres_schema(postgres_base_url()) as team_url:
        team_url, team_id = fresh_db_at(team_url, renderer)
        apply_import(plan_import(first, None, url=team_url), team_url, "importer")
        from_postgres = export_direction_set(team_url, team_id, all_reviewed=True)
    assert from_postgres == first
    back_url, back_id = fresh_db(tmp_path / "back.db", renderer.fingerprint, architecture(renderer))
    apply_import(plan_import(from_postgres, None, url=back_url), back_url, "importer")
    assert export_direction_set(back_url, back_id, all_reviewed=True) == first


def fresh_db_at(url: str, renderer):
    ensure_current(url)
    with write_session(url) as session:
        model = queries.register_model(session, "tiny", "tiny.pkl", renderer.fingerprint, architecture(renderer))
    return url, model.id
