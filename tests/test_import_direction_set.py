"""Import of Atelier direction sets: every bad file is refused with a clear message and nothing is written."""
from __future__ import annotations

import io
import json
import struct
import warnings
import zipfile

import numpy as np
import pytest
from safetensors.numpy import save

from conftest import assert_clean_user_error
from db import queries
from db.engine import dispose_engines, read_session
from direction_fixtures import (  # noqa: F401
    ARCH,
    FINGERPRINT,
    NUM_WS,
    W_DIM,
    _close_engines,
    fresh_db,
    members,
    populate,
    runner,
    target,
    untouched,
)
from model.directions.set_format import JSON_MEMBER, LABELS_MEMBER, VECTORS_MEMBER, DirectionSetError
from model.directions.set_reader import load_direction_set
from workflows.export import export_direction_set
from workflows.imports import apply_import, plan_import


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> bytes:
    """A valid all-reviewed export of a small model (w_dim 8, 6 ws): the base every bad file is made from."""
    url, model_id = fresh_db(tmp_path_factory.mktemp("good") / "source.db", FINGERPRINT, ARCH)
    populate(url, model_id, W_DIM, NUM_WS)
    data = export_direction_set(url, model_id, all_reviewed=True)
    dispose_engines()
    return data


def snapshot(url: str) -> tuple:
    with read_session(url) as s:
        models = queries.list_models(s)
        return (
            [m.fingerprint for m in models],
            [(c.id, c.method, c.component_count) for c in queries.list_component_sets(s)],
            [(d.name, d.unpublished_at) for m in models for d in queries.direction_history(s, m.id)],
            [r.name for r in queries.list_reviewers(s)],
            [c.name for c in queries.list_categories(s, include_retired=True)],
        )


def rezip(parts: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate names are one of the cases under test
        for name, payload in parts.items() if isinstance(parts, dict) else parts:
            zf.writestr(name, payload)
    return buffer.getvalue()


def edit_json(data: bytes, change) -> bytes:
    parts = members(data)
    doc = json.loads(parts[JSON_MEMBER])
    change(doc)
    parts[JSON_MEMBER] = json.dumps(doc).encode()
    return rezip(parts)


def vectors_of(data: bytes) -> tuple[list[str], dict[str, np.ndarray]]:
    ds = load_direction_set(data)
    return ds.names, {name: ds.vectors[i] for i, name in enumerate(ds.names)}


def replace_vectors(data: bytes, tensors: dict[str, np.ndarray], names: list[str] | None = None) -> bytes:
    parts = members(data)
    meta = None if names is None else {"atelier": json.dumps({"names": names})}
    parts[VECTORS_MEMBER] = save(tensors, metadata=meta)
    return rezip(parts)


def rename(data: bytes, old: str, new: str) -> bytes:
    names, tensors = vectors_of(data)
    tensors[new] = tensors.pop(old)
    data = replace_vectors(data, tensors)

    def change(doc):
        next(d for d in doc["directions"] if d["name"] == old)["name"] = new
    return edit_json(data, change)


def patch_central(data: bytes, member: str, offset: int, fmt: str, value: int) -> bytes:
    """Overwrite a field of a member's central-directory entry (what zipfile believes about the member)."""
    raw = bytearray(data)
    at = 0
    while True:
        at = raw.find(b"PK\x01\x02", at)
        assert at >= 0, member
        length = struct.unpack_from("<H", raw, at + 28)[0]
        if raw[at + 46: at + 46 + length].decode() == member:
            struct.pack_into(fmt, raw, at + offset, value)
            return bytes(raw)
        at += 4


def _first(doc):
    return doc["directions"][0]


def _vector_shape(data):
    names, tensors = vectors_of(data)
    tensors[names[0]] = tensors[names[0]][:-1].copy()
    return replace_vectors(data, tensors)


def _nan_vector(data):
    names, tensors = vectors_of(data)
    tensors[names[1]] = tensors[names[1]].copy()
    tensors[names[1]][3] = np.nan
    return replace_vectors(data, tensors)


def _float64_vector(data):
    names, tensors = vectors_of(data)
    tensors[names[0]] = tensors[names[0]].astype(np.float64)
    return replace_vectors(data, tensors)


def _extra_vector(data):
    names, tensors = vectors_of(data)
    tensors["stowaway"] = np.ones(W_DIM, np.float32)
    return replace_vectors(data, tensors)


def _order_mismatch(data):
    names, tensors = vectors_of(data)
    return replace_vectors(data, tensors, names=list(reversed(names)))


def _zero_vector(data):
    names, tensors = vectors_of(data)
    tensors[names[0]] = np.zeros(W_DIM, np.float32)
    return replace_vectors(data, tensors)


def _drop(member):
    return lambda data: rezip({k: v for k, v in members(data).items() if k != member})


def _add(name, payload=b"x"):
    return lambda data: rezip([*members(data).items(), (name, payload)])


def _bomb(data):
    parts = members(data)
    parts[LABELS_MEMBER] = b"\0" * (2 << 20)  # 2 MiB of zeros deflate about 1000:1
    return rezip(parts)


def _declared_huge(data):
    return patch_central(data, LABELS_MEMBER, 24, "<I", 300 << 20)


def _lies_about_size(data):
    # Claims fewer bytes than the member holds: reading stops there and the CRC no longer matches.
    return patch_central(data, JSON_MEMBER, 24, "<I", 100)


def _encrypted(data):
    return patch_central(data, LABELS_MEMBER, 8, "<H", 0x1)


def _nan_json(data):
    parts = members(data)
    text = parts[JSON_MEMBER].decode()
    parts[JSON_MEMBER] = text.replace('"sigma": 1.0', '"sigma": NaN', 1).encode()
    assert parts[JSON_MEMBER] != text.encode()
    return rezip(parts)


def _duplicate_key(data):
    parts = members(data)
    parts[JSON_MEMBER] = parts[JSON_MEMBER].replace(b'"selection":', b'"selection": "published", "selection":', 1)
    return rezip(parts)


BAD_FILES = {
    "truncated": (lambda d: d[: len(d) // 2], "not a complete zip file"),
    "missing directions.json": (_drop(JSON_MEMBER), "lacks directions.json"),
    "missing vectors": (_drop(VECTORS_MEMBER), "lacks directions.safetensors"),
    "missing labels.csv": (_drop(LABELS_MEMBER), "lacks labels.csv"),
    "wrong vector shape": (_vector_shape, "has shape [7]; this set's model has w_dim 8"),
    "NaN vector": (_nan_vector, "contains NaN or infinite values"),
    "float64 vector": (_float64_vector, "is float64, expected float32"),
    "vector without a name": (_extra_vector, "'stowaway'] that directions.json does not list"),
    "vector order differs": (_order_mismatch, "name order in directions.safetensors differs"),
    "all-zero vector": (_zero_vector, "is all zeros"),
    "NaN in json": (_nan_json, "contains NaN, which is not a number"),
    "duplicate json key": (_duplicate_key, "repeats the key(s) ['selection']"),
    "unknown format version": (lambda d: edit_json(d, lambda doc: doc.update(format_version=2)),
                               "format version 2, but this Atelier reads up to version 1: upgrade Atelier"),
    "wrong format name": (lambda d: edit_json(d, lambda doc: doc.update(format="something-else")),
                          "is not an Atelier direction set"),
    "name with slash": (lambda d: rename(d, "Volume", "../../etc/passwd"), "contains a path separator"),
    "name with backslash": (lambda d: rename(d, "Volume", "a\\b"), "contains a path separator"),
    "name with dot-dot": (lambda d: rename(d, "Volume", "up..there"), "contains '..'"),
    "name with control character": (lambda d: rename(d, "Volume", "bell\x07"), "control characters"),
    "name with bidi override": (lambda d: rename(d, "Volume", "photo\u202egpj.exe"), "control characters"),
    "category with spaces": (lambda d: edit_json(d, lambda doc: _first(doc).update(category=" sleeve")),
                             "without surrounding spaces"),
    "deeply nested json": (lambda d: rezip({**members(d), JSON_MEMBER: b"[" * 200_000 + b"]" * 200_000}),
                           "nested too deeply"),
    "duplicate names": (lambda d: edit_json(d, lambda doc: doc["directions"][1].update(name=_first(doc)["name"])),
                        "is used by two directions"),
    "layer range beyond num_ws": (lambda d: edit_json(d, lambda doc: _first(doc).update(layer_range=[2, 9])),
                                  "0 <= start < end <= num_ws (6"),
    "negative sigma": (lambda d: edit_json(d, lambda doc: _first(doc).update(sigma=-1)), "sigma must be between 0.0"),
    "unknown field": (lambda d: edit_json(d, lambda doc: _first(doc).update(colour="red")),
                      "unknown field(s) ['colour']"),
    "unknown set key": (lambda d: edit_json(d, lambda doc: doc["directions"][1]["source"].update(set="s9")),
                        "not in component_sets"),
    "approval without label": (
        lambda d: edit_json(d, lambda doc: next(
            d for d in doc["directions"] if d["name"] == "Sleeve length"
        )["reviews"]["by_reviewer"][0].update(label="")),
        "an approval needs a label"),
    "zip bomb (ratio)": (_bomb, "compressed more than 100:1"),
    "zip bomb (declared size)": (_declared_huge, "refused as a possible zip bomb"),
    "member lies about its size": (_lies_about_size, "is damaged"),
    "unsafe member path": (_add("../evil.sh"), "unsafe path '../evil.sh'"),
    "absolute member path": (_add("/etc/cron.d/x"), "unsafe path '/etc/cron.d/x'"),
    "duplicate member": (_add(LABELS_MEMBER, b"name\r\n"), "contains 'labels.csv' twice"),
    "unexpected member": (_add("run.sh"), "unexpected member 'run.sh'"),
    "stray preview": (_add("previews/000.jpg"), "previews no direction refers to"),
    "encrypted member": (_encrypted, "is encrypted"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_files_are_refused_and_nothing_is_written(case, good, untouched):
    url, _ = untouched
    mutate, message = BAD_FILES[case]
    bad = mutate(good)
    before = snapshot(url)
    plan = plan_import(bad, FINGERPRINT, url=url, filename="team.zip")
    assert not plan.ok
    assert any(message in error for error in plan.errors), plan.errors
    with pytest.raises(DirectionSetError, match="nothing was written"):
        apply_import(plan, url, "ana")
    with pytest.raises(DirectionSetError) as raised:
        load_direction_set(bad)
    assert message in str(raised.value)
    assert snapshot(url) == before


def test_good_file_is_accepted_from_path_bytes_and_upload(tmp_path, good, target):
    url, _ = target
    path = tmp_path / "set.zip"
    path.write_bytes(good)

    class Upload(io.BytesIO):  # what Streamlit's file_uploader hands the page
        name = "from-browser.zip"

    for source in (path, str(path), good, Upload(good)):
        plan = plan_import(source, FINGERPRINT, url=url)
        assert plan.ok, plan.errors
    assert plan.source == "from-browser.zip" and "from-browser.zip" in plan.summary()
    assert load_direction_set(Upload(good)).names == load_direction_set(path).names


def test_a_different_model_needs_force_and_the_same_dimensions(tmp_path, good):
    other = "cd" * 32
    url, _ = fresh_db(tmp_path / "other.db", other, ARCH, name="fine-tuned")
    plan = plan_import(good, other, url=url)
    assert not plan.ok and "different model" in plan.errors[0] and "--force" in plan.errors[0]
    plan = plan_import(good, other, force=True, url=url)
    assert plan.ok and any("different model" in w for w in plan.warnings)
    apply_import(plan, url, "ana")
    with read_session(url) as s:
        assert len(queries.active_directions(s, 1)) == 4

    wide = "ef" * 32
    url, _ = fresh_db(tmp_path / "wide.db", wide, {**ARCH, "w_dim": 16})
    plan = plan_import(good, wide, force=True, url=url)
    assert not plan.ok and "w_dim 8" in plan.errors[0] and "has w_dim 16" in plan.errors[0]
    plan = plan_import(good, None, url=url)
    assert not plan.ok and "no model with fingerprint abababababab" in plan.errors[0]


def test_changed_direction_replaces_the_published_one(good, target):
    url, model_id = target
    apply_import(plan_import(good, None, url=url), url, "ana")

    def narrower(doc):
        next(d for d in doc["directions"] if d["name"] == "Volume").update(layer_range=[1, 3])
    plan = plan_import(edit_json(good, narrower), None, url=url)
    assert plan.ok and plan.counts()["replace"] == 1 and plan.counts()["unchanged"] == 3
    result = apply_import(plan, url, "ben")
    assert result.replaced == ["Volume"] and result.component_set_ids == []
    with read_session(url) as s:
        history = [d for d in queries.direction_history(s, model_id) if d.name == "Volume"]
    assert [(d.layer_range, d.active, d.unpublished_by) for d in history] == [((0, 6), False, "ben"),
                                                                             ((1, 3), True, None)]


def test_a_failure_while_writing_rolls_everything_back(good, target, monkeypatch):
    url, _ = target
    before = snapshot(url)
    plan = plan_import(good, FINGERPRINT, url=url)
    assert plan.ok
    calls = []

    def failing(*args, **kwargs):
        calls.append(args)
        if len(calls) == 3:
            raise queries.InvalidInput("simulated failure on the third publication")
        return original(*args, **kwargs)
    original = queries.publish_direction
    monkeypatch.setattr(queries, "publish_direction", failing)
    with pytest.raises(queries.InvalidInput, match="simulated"):
        apply_import(plan, url, "ana")
    assert snapshot(url) == before  # sets, reviews, reviewers, categories, publications: all rolled back


def test_a_plan_made_earlier_is_checked_again_when_applied(good, target):
    url, _ = target
    plan = plan_import(good, FINGERPRINT, url=url)
    apply_import(plan_import(good, FINGERPRINT, url=url), url, "ana")  # someone imported it meanwhile
    result = apply_import(plan, url, "ana")
    assert result.component_set_ids == [] and result.unchanged == 4


def test_cli_import_shows_the_plan_and_asks(tmp_path, good, reference_dir):
    from cli.main import app

    path = tmp_path / "team.zip"
    path.write_bytes(good)
    url, _ = fresh_db(tmp_path / "cli.db", FINGERPRINT, ARCH)
    before = snapshot(url)
    result = runner.invoke(app, ["import", str(path), "--database", url, "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "publish 'Sleeve length'" in result.output and "dry run: nothing was written" in result.output
    result = runner.invoke(app, ["import", str(path), "--database", url], input="n\n")
    assert result.exit_code == 1 and "cancelled" in result.output
    assert snapshot(url) == before
    result = runner.invoke(app, ["import", str(path), "--database", url, "--reviewer", "ana"], input="y\n")
    assert result.exit_code == 0, result.output
    assert "imported: 2 new component set(s), 9 review(s), 4 published, 0 replaced" in result.output

    (tmp_path / "bad.zip").write_bytes(good[:100])
    result = runner.invoke(app, ["import", str(tmp_path / "bad.zip"), "--database", url, "--yes"])
    assert_clean_user_error(result, "not a complete zip file")

    other_url, _ = fresh_db(tmp_path / "other.db", "cd" * 32, ARCH, name="other")
    result = runner.invoke(app, ["import", str(path), "--database", other_url, "--model", "other", "--yes"])
    assert result.exit_code == 1 and "--force" in result.output and "nothing was written" in result.output
    result = runner.invoke(app, ["import", str(path), "--database", other_url, "--model", "other", "--force", "--yes"])
    assert result.exit_code == 0 and "4 published" in result.output


def test_names_may_hold_any_printable_text():
    from core.errors import InvalidInput
    from core.names import check_direction_name  # one rule, in core, for the file and for publishing

    for name in ("Ärmel länger", "Colour: red (warm)", "袖の長さ", "👩\u200d🎨 artsy", "-Hemline", "a.b"):
        assert check_direction_name(name) == name
    for name in ("", " padded", "a/b", "..", "tab\there", "line\u2028break", "rtl\u202eoverride"):
        with pytest.raises(InvalidInput):
            check_direction_name(name)


def test_supervised_sigma_in_the_file_is_kept(good, target):
    url, model_id = target

    def scaled(doc):
        next(d for d in doc["directions"] if d["source"]["kind"] == "supervised").update(sigma=2.5)
    data = edit_json(good, scaled)
    plan = plan_import(data, None, url=url)
    assert plan.ok and not any("σ" in w for w in plan.warnings), plan.summary()
    apply_import(plan, url, "importer")
    with read_session(url) as s:
        hemline = next(d for d in queries.active_directions(s, model_id) if d.name == "-Hemline")
        assert hemline.source == "supervised" and hemline.sigma == 2.5
        assert hemline.published_at.isoformat() == load_direction_set(data).direction("-Hemline").published_at
    assert load_direction_set(export_direction_set(url, model_id)).direction("-Hemline").sigma == 2.5
    assert plan_import(data, None, url=url).counts() == {"reuse-set": 2, "unchanged": 4}

    # Another σ for the same direction is a change: the file's replaces the database's.
    plan = plan_import(edit_json(good, lambda doc: None), None, url=url)
    assert plan.counts()["replace"] == 1 and "σ 1" in next(i.detail for i in plan.items if i.action == "replace")


def test_team_mode_import_keeps_the_files_reviewers_only_as_provenance(good, target, monkeypatch):
    """On a team server a file cannot vote or publish in anyone's name, nor back-date: the admin who imports does,
    now, and who the file says did it (ana, ben, cleo in `populate`) is kept beside each row."""
    from datetime import datetime, timezone

    from db import accounts
    from db.engine import write_session
    from core.errors import AtelierError

    monkeypatch.delenv(accounts.TEAM_ENV, raising=False)
    url, model_id = target
    with write_session(url) as s:
        accounts.add_account(s, "imogen", "correct horse battery", admin=True)
        accounts.add_account(s, "rita", "correct horse battery")
    plan = plan_import(good, None, url=url)
    assert plan.ok, plan.errors
    assert "add-reviewer" not in plan.summary() and "provenance 'ana', 'ben', 'cleo'" in plan.summary()
    for who in ("rita", "mallory"):  # a reviewer account, and a name that is nobody's
        with pytest.raises(AtelierError, match="Only an admin may import"):
            apply_import(plan, url, who)
    started = datetime.now(timezone.utc)
    result = apply_import(plan, url, "imogen")
    assert sorted(result.published) == ["-Hemline", "Colour: red", "Sleeve length", "Volume"] and result.reviews
    with read_session(url) as s:
        assert sorted(r.name for r in queries.list_reviewers(s)) == ["imogen", "rita"]  # no names were made
        directions = queries.active_directions(s, model_id)
        reviews = [r for cid in (c.id for st in queries.list_component_sets(s, model_id)
                                 for c in queries.list_components(s, st.id))
                   for r in queries.review_history(s, cid)]
    assert {d.published_by for d in directions} == {"imogen"}
    assert all(d.published_at >= started for d in directions)  # not back-dated
    assert {d.name: d.provenance["published_by"] for d in directions} == {
        "-Hemline": "cleo", "Colour: red": "ben", "Sleeve length": "ana", "Volume": "ben"}
    assert all(d.provenance["published_at"] and d.provenance["file"] == plan.source for d in directions)
    assert len(reviews) == result.reviews and {r.reviewer for r in reviews} == {"imogen"}
    assert {r.provenance["reviewer"] for r in reviews} == {"ana", "ben", "cleo"}
