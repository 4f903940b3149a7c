"""The annotator: page logic with streamlit.testing.v1.AppTest, and the non-Streamlit helpers behind the pages.

One small model (the reference tiny 32 px generator, converted to safetensors) and one database per module, so
the first-start bootstrap (migration, registration, SeFa) runs once.
"""
from __future__ import annotations

import numpy as np
import pytest

from conftest import REFERENCE, REPO
from workflows import registry
from core.errors import AtelierError

APP = str(REPO / "annotator" / "app.py")
INJECTION = "<script>alert(1)</script> **bold**"


@pytest.fixture(scope="module")
def app_env(tmp_path_factory):
    from model.network.checkpoint import convert

    home = tmp_path_factory.mktemp("app-home")
    model = home / "tiny32.safetensors"
    convert(REFERENCE / "sg2ada_tiny32.pkl", model)
    return {"ATELIER_HOME": str(home), "ATELIER_MODEL": str(model), "ATELIER_SCORE_ON_START": "0",
            "ATELIER_RUNS": str(home / "runs")}


@pytest.fixture
def env(app_env, monkeypatch):
    for key, value in app_env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("ATELIER_DATABASE_URL", raising=False)
    monkeypatch.delenv("ATELIER_MIN_APPROVALS", raising=False)
    return app_env


def _app(reviewer: str | None = None):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=120)
    if reviewer:
        at.session_state["reviewer"] = reviewer
    return at.run()


def _errors(at) -> list:
    return [e.value for e in at.exception]


def _page(at, name: str):
    return at.switch_page(f"views/{name}.py").run()


# --- pages -------------------------------------------------------------------------------------------------------


def test_every_page_renders_on_a_fresh_database(env):
    at = _app("Pages")
    assert not _errors(at)
    assert at.title[0].value.startswith("Component")  # Review is the default page, with 512 components ready
    for name in ("overview", "review", "components", "generate", "looks", "map", "directions", "models", "training"):
        _page(at, name)
        assert not _errors(at), (name, _errors(at))
        assert not at.error, (name, [e.value for e in at.error])


def test_sign_in_is_asked_once_per_session(env):
    at = _app()
    assert any("Sign in" in i.value for i in at.info)
    at.sidebar.text_input(key="signin_name").input("  Bea ")
    at.sidebar.button[0].click().run()
    assert at.session_state["reviewer"] == "Bea"
    assert at.title[0].value.startswith("Component")


def test_generate_with_nothing_published_explains_and_empty_seed_prompts(env):
    from annotator.generate import GUIDANCE

    at = _page(_app("Gen"), "generate")
    assert any(i.value == GUIDANCE for i in at.info)
    at.text_input(key="gen.seed").set_value("").run()
    assert not _errors(at)
    assert any("Type a seed" in i.value for i in at.info)
    for bad in ("abc", "-1", "4294967296", "1.5"):
        at.text_input(key="gen.seed").set_value(bad).run()
        assert not _errors(at), bad
        assert any("whole number" in i.value for i in at.info), bad
    at.text_input(key="gen.seed").set_value("4294967295").run()
    assert not _errors(at)
    assert at.query_params["seed"] in ("4294967295", ["4294967295"])


def test_generate_reads_a_malformed_link_with_warnings(env):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["reviewer"] = "Link"
    at.query_params.update({"seed": "banana", "psi": "nan", "d.999": "2", "d.x": "1", "class": "7"})
    at.run()
    at.switch_page("views/generate.py").run()
    # switch_page resets the URL; the page logic is what reads it, so check that directly too.
    from annotator.generate import parse_query

    look, warnings = parse_query({"seed": "banana", "psi": "nan", "d.999": "2", "d.x": "1", "class": "7"}, [], 4)
    assert look.seed == 0 and look.psi == 0.7 and look.values == () and look.class_index == 0
    # One warning per bad part, each naming what the link said and what is shown instead.
    assert len(warnings) == 5
    for said, instead in (("'banana'", "seed 0"), ("'nan'", "0.7"), ("'7'", "class 0"), ("'d.999'", "not published"),
                          ("'d.x'", "not a direction")):
        assert any(said in w and instead in w for w in warnings), (said, warnings)
    assert not _errors(at)


def test_review_form_records_an_approval_and_labels_stay_plain_text(env):
    from db import queries as q
    from db.engine import read_session

    at = _app("Cleo")
    component_id = at.session_state["rv.current"]
    before = at.title[0].value
    at.text_input(key=f"rv.label.{component_id}").input(INJECTION)
    at.selectbox(key=f"rv.category.{component_id}").set_value("sleeve")
    next(b for b in at.button if b.label == "Approve").click().run()
    assert not _errors(at)
    assert at.title[0].value != before  # moved on to the next component

    with read_session() as session:
        review = q.latest_review(session, "Cleo", component_id)
    assert review is not None and review.decision == "approve"
    assert review.label == INJECTION and review.category == "sleeve"
    assert review.layer_range == (0, 8) and review.strength_range == (-3.0, 3.0)

    # The label shows literally everywhere: as a table cell, as a form default, never as Markdown/HTML.
    at = _page(at, "components")
    table = at.dataframe[0].value
    assert INJECTION in set(table["label"])
    at = _page(at, "directions")
    assert at.text_input(key=f"pub.name.{component_id}").value == INJECTION
    for element in (*at.markdown, *at.caption, *at.success, *at.info):
        assert "<script>" not in element.value and "**bold**" not in element.value

    # A teammate sees the earlier review as plain text in the table.
    at = _app("Dan")
    at.session_state["rv.current"] = component_id
    at.run()
    teammates = at.dataframe[0].value
    assert list(teammates["label"]) == [INJECTION]


def test_suggested_layer_group_is_one_click_and_recorded_on_approval(env):
    from db import queries as q
    from db.engine import read_session, write_session
    from db.schema import Component

    at = _app("Gia")
    component_id = at.session_state["rv.current"]
    with write_session() as session:
        session.get(Component, component_id).layer_sensitivity = "fine"
    at.run()
    next(b for b in at.button if b.label == "Try fine").click().run()
    assert not _errors(at) and at.session_state[f"rv.preset.{component_id}"] == "fine"
    assert not [b for b in at.button if b.label == "Try fine"]  # shown only while another range is chosen
    at.text_input(key=f"rv.label.{component_id}").input("backdrop")
    next(b for b in at.button if b.label == "Approve").click().run()
    with read_session() as session:
        assert q.latest_review(session, "Gia", component_id).layer_range == (5, 8)  # the tiny model's fine rows


def test_approve_without_label_is_refused_with_a_message(env):
    at = _app("Eve")
    component_id = at.session_state["rv.current"]
    next(b for b in at.button if b.label == "Approve").click().run()
    assert not _errors(at)
    assert any("needs a label" in e.value for e in at.error)
    assert at.session_state["rv.current"] == component_id


def test_skip_and_previous_and_jump(env):
    at = _app("Finn")
    first = at.session_state["rv.current"]
    next(b for b in at.button if b.label == "Skip").click().run()
    second = at.session_state["rv.current"]
    assert second != first
    next(b for b in at.button if b.label == "Previous").click().run()
    assert at.session_state["rv.current"] == first
    assert at.number_input(key="rv.jump").value == at.session_state["rv.index"]  # the box shows where you are
    at.number_input(key="rv.jump").set_value(100).run()
    assert at.title[0].value == "Component 100"
    next(b for b in at.button if b.label == "Skip").click().run()
    assert at.number_input(key="rv.jump").value == at.session_state["rv.index"] != 100


def test_resample_seeds_is_stored_for_the_team_and_can_be_undone(env):
    from annotator import services
    from db import queries as q
    from db.engine import read_session

    at = _app("Gil")
    set_id = services.context().component_set.id

    def stored() -> list[int]:
        with read_session(services.context().url) as session:
            return q.get_component_set(session, set_id).review_seeds

    before = stored()
    at.button(key="rv.resample").click().run()
    assert not _errors(at)
    after_resample = stored()
    assert after_resample != before and len(after_resample) == len(before)
    assert any(str(after_resample[0]) in c.value for c in at.caption)  # the strip shows the new seeds
    other = _app("Hana")  # another reviewer's session reads the same stored seeds
    assert any(", ".join(map(str, after_resample)) in c.value for c in other.caption)
    at.button(key="rv.unresample").click().run()
    assert stored() == before
    assert not any(b.key == "rv.unresample" for b in at.button)


def test_resample_seeds_helpers(env):
    from annotator import review, services

    ctx = services.bootstrap()
    fresh, previous = review.resample_seeds(ctx.url, ctx.component_set.id, 4, rng_seed=3)
    assert len(fresh) == 4 and len(set(fresh)) == 4 and all(0 <= s < 100_000 for s in fresh)
    again, previous2 = review.resample_seeds(ctx.url, ctx.component_set.id, 4, rng_seed=3)
    assert again == fresh and previous2 == fresh  # reproducible with a seed; "previous" is what was stored
    assert review.restore_seeds(ctx.url, ctx.component_set.id, previous) == previous


def test_publish_then_slider_on_generate_and_save_look(env):
    from annotator import directions, services
    from db import queries as q
    from db.engine import read_session, write_session

    ctx = services.bootstrap()
    with write_session(ctx.url) as session:
        q.ensure_reviewer(session, "Gus")
        component = q.list_components(session, ctx.component_set.id)[5]
        q.record_review(session, "Gus", component.id, "approve", label="waist", category="silhouette",
                        layer_range=(0, 4))
    candidates = directions.candidates(ctx.url, ctx.component_set.id, ctx.model)
    ready = [c for c in candidates if c.component_id == component.id]
    assert ready and ready[0].layer_range == (0, 4) and ready[0].name == "waist"
    info = directions.publish(ctx.url, registry.renderer_for(ctx.model), "Gus", ctx.model.id, component.id, "waist",
                              "silhouette", (0, 4), (-2.0, 2.0))

    at = _page(_app("Gus"), "generate")
    slider = at.slider(key=f"gen.d.{info.id}")
    assert slider.label == "waist" and slider.min == -2.0 and slider.max == 2.0
    slider.set_value(1.5).run()
    assert not _errors(at)
    assert at.query_params[f"d.{info.id}"] in ("1.5", ["1.5"])
    at.toggle(key="gen.compare").set_value(True).run()  # before/after side by side
    captions = [c for image in at.get("image") for c in image.captions]
    assert not _errors(at) and captions == ["Unedited", "Edited"]
    # Pictures that change with every slider move travel inside the page (no media URL a later run can drop).
    urls = [img.url for image in at.get("image") for img in image.proto.imgs]
    assert len(urls) == 2 and all(url.startswith("data:image/jpeg;base64,") for url in urls)
    at.text_input(key="gen.look_name").input("cinched")
    next(b for b in at.button if b.label == "Save look").click().run()
    assert not _errors(at)
    with read_session(ctx.url) as session:
        looks = q.list_looks(session, ctx.model.id, "Gus")
    assert looks[0].name == "cinched" and looks[0].edits[0].value == 1.5
    at = _page(at, "looks")
    assert not _errors(at)
    assert any(t.value == "cinched" for t in at.text)


# --- logic without Streamlit ----------------------------------------------------------------------------------------


def test_data_url_carries_the_picture_and_refuses_other_bytes():
    import base64
    import io

    from PIL import Image

    from annotator import imaging

    picture = np.zeros((8, 8, 3), np.uint8)
    picture[:, 4:] = (200, 30, 60)
    for encoded, mime in ((imaging.to_jpeg(picture), "image/jpeg"), (imaging.to_png(picture), "image/png")):
        url = imaging.data_url(encoded)
        head, payload = url.split(",", 1)
        assert head == f"data:{mime};base64"
        assert base64.b64decode(payload) == encoded
        assert Image.open(io.BytesIO(base64.b64decode(payload))).size == (8, 8)
    with pytest.raises(ValueError, match="JPEG or PNG"):
        imaging.data_url(b"GIF89a....")


def test_unedited_look_keeps_seed_psi_and_class():
    from annotator.generate import LookState, unedited

    look = LookState(seed=7, psi=0.6, class_index=2, values=((3, 1.5), (4, -0.5)))
    assert unedited(look) == LookState(seed=7, psi=0.6, class_index=2, values=())


def test_query_round_trip_and_clamping():
    from annotator import generate

    slider = generate.Slider(id=3, name="sleeve", category="sleeve", vector=np.ones(4), sigma=1.0,
                             layer_range=(0, 4), strength_range=(-2.0, 2.0))
    look = generate.LookState(seed=4294967295, psi=0.5, values=((3, 1.5),))
    parsed, warnings = generate.parse_query(generate.to_query(look), [slider])
    assert parsed == look and not warnings
    parsed, warnings = generate.parse_query({"seed": "7", "d.3": "9"}, [slider])
    assert parsed.value(3) == 2.0 and "clamped" in warnings[0]
    assert generate.parse_seed("") == (None, generate.parse_seed(" ")[1])
    assert generate.parse_seed("12") == (12, None)


def test_escape_markdown_shows_text_literally():
    from annotator.review import escape_markdown

    escaped = escape_markdown(INJECTION + " :red[x] $x$ [a](http://e)")
    for raw in ("<script>", "**", ":red[", "$x$", "]("):
        assert raw not in escaped


def test_queue_navigation_helpers():
    from annotator.review import after, upcoming
    from db.records import QueueItem

    items = [QueueItem(component_id=i, index=i, priority=None, skipped=False) for i in (4, 5, 6)]
    assert after(items, 5) == 6 and after(items, 6) is None and after(items, 99) == 4
    assert upcoming(items, 4, 2) == [5, 6] and upcoming(items, 6, 2) == [4, 5]


def test_layer_presets_and_strip_cache(env):
    from annotator import review, services, strips

    ctx = services.bootstrap()
    renderer = registry.renderer_for(ctx.model)
    presets = services.layer_presets(renderer)
    assert presets == {"coarse": (0, 3), "middle": (3, 5), "fine": (5, 8), "all": (0, 8)}
    from db import queries as q
    from db.engine import read_session

    with read_session(ctx.url) as session:
        component = q.list_components(session, ctx.component_set.id)[2]
        vector = q.component_vector(session, component.id)
    request = review.strip_request(ctx, component, vector, review.StripSettings(preset="fine", steps=5),
                                   renderer, [1, 2])
    strips.prefetcher().submit([request], renderer)
    strips.prefetcher().wait(timeout=120)
    assert strips.cached(request) is not None
    shown = strips.get_strip(request, renderer)
    assert shown.grid[:2] == b"\xff\xd8" and shown.heat[:2] == b"\xff\xd8"


def test_slider_moves_only_its_layer_range_by_value_times_sigma(env):
    import torch

    from annotator import services
    from model.network.render import apply_edits

    vector = np.random.default_rng(0).standard_normal(8).astype(np.float32)
    vector /= np.linalg.norm(vector)
    ws = torch.zeros(1, 6, 8)
    moved = apply_edits(ws, [services.edit_for(vector, 0.7, 1.5, 1, 4)])
    assert torch.equal(moved[0, 1:4], torch.from_numpy(np.float32(1.5 * 0.7) * vector).expand(3, 8))
    assert not moved[0, [0, 4, 5]].any()  # rows outside the slider's layer range stay where they were


def test_a_strip_step_and_a_slider_step_at_the_same_sigma_move_w_alike_for_a_non_unit_vector(env):
    """An imported vector need not be unit length (GANSpace files are kept as they are). A Review strip's step and a
    Generate slider at the same σ must both move w by float32(σ-value · σ) · the stored vector."""
    import torch

    from annotator import generate, review, services, strips
    from db import queries as q
    from db.engine import read_session
    from model.network.render import apply_edits

    ctx = services.bootstrap()
    renderer = registry.renderer_for(ctx.model)
    with read_session(ctx.url) as session:
        component = q.list_components(session, ctx.component_set.id)[5]
    vector = np.random.default_rng(11).standard_normal(renderer.w_dim).astype(np.float32)
    vector *= np.float32(2.5 / np.linalg.norm(vector))
    settings = review.StripSettings(preset="fine", steps=5, max_sigma=2.0)
    seed = 77_123  # a look no other test renders, so neither page answers from its cache
    request = review.strip_request(ctx, component, vector, settings, renderer, [seed])
    slider = generate.Slider(id=987_654, name="non-unit", category="", vector=vector, sigma=request.sigma,
                             layer_range=settings.layers(renderer), strength_range=(-2.0, 2.0))
    look = generate.LookState(seed=seed, psi=settings.psi, values=((slider.id, 1.0),))
    moved: list[torch.Tensor] = []
    pictures: list[np.ndarray] = []
    original = renderer.synthesize

    def recording(ws, edits=(), **kwargs):
        moved.append(apply_edits(ws, list(edits)))
        pictures.append(original(ws, edits, **kwargs))
        return pictures[-1]

    renderer.synthesize = recording
    try:
        strips.get_strip(request, renderer)
        generate.render_array(renderer, look, [slider])
    finally:
        del renderer.synthesize
    assert len(moved) == 2, "both the strip and the slider must have rendered"
    (strip_w, slider_w), step = moved, request.spec.steps.index(1.0)
    assert torch.equal(strip_w[step], slider_w[0])
    # σ × the stored vector (length 2.5 σ here), not σ × its unit vector (length σ), as strips once did.
    step_w = strip_w[step, slider.layer_range[0]] - strip_w[request.spec.steps.index(0.0), slider.layer_range[0]]
    torch.testing.assert_close(step_w, torch.from_numpy(np.float32(request.sigma) * vector), rtol=0, atol=1e-5)
    assert np.abs(pictures[0][step].astype(int) - pictures[1][0].astype(int)).max() <= 2


def test_cli_registers_app_and_bench(env):
    from typer.testing import CliRunner

    from cli.app_commands import streamlit_command
    from cli.main import app

    runner = CliRunner()
    assert runner.invoke(app, ["app", "--help"]).exit_code == 0
    assert runner.invoke(app, ["bench", "app", "--help"]).exit_code == 0
    command = streamlit_command(9000, "0.0.0.0")
    assert command[command.index("--server.headless") + 1] == "true"
    assert command[command.index("--server.address") + 1] == "0.0.0.0"
    assert command[command.index("--server.port") + 1] == "9000"
    assert runner.invoke(app, ["app", "--port", "0"]).exit_code == 1


def test_uploads_are_kept_by_content_and_a_replaced_file_is_reloaded(env, tmp_path):
    import os
    import shutil

    tiny = (REFERENCE / "sg2ada_tiny32.pkl").read_bytes()
    cond = (REFERENCE / "sg2ada_tiny32_cond.pkl").read_bytes()
    first = registry.store_upload("network-snapshot.pkl", tiny)
    second = registry.store_upload("network-snapshot.pkl", cond)  # same name, other weights
    assert first != second and first.read_bytes() == tiny and second.read_bytes() == cond
    assert registry.store_upload("../network-snapshot.pkl", tiny) == first  # same content: the same file
    with pytest.raises(AtelierError, match="empty"):
        registry.store_upload("x.pkl", b"")
    # A model file replaced in place: the app renders with the new weights, not a cached renderer of the old ones.
    path = tmp_path / "model.pkl"
    shutil.copyfile(first, path)
    before = registry.get_renderer(path)
    assert registry.get_renderer(path) is before  # loaded once while the file stays the same
    shutil.copyfile(second, path)
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10 ** 9))
    assert registry.get_renderer(path).fingerprint != before.fingerprint


def test_state_writes_from_many_sessions_lose_nothing(env):
    from concurrent.futures import ThreadPoolExecutor

    from annotator import services

    def choose(i: int) -> None:
        services._write_state(**{f"key{i}": i})

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(choose, range(40)))
    state = services._read_state()
    assert all(state[f"key{i}"] == i for i in range(40))
    assert not list(services._state_file().parent.glob("*.tmp"))  # no temporary files left behind


def test_training_page_follows_a_run_and_registers_its_best_generator(env):
    from pathlib import Path

    from test_runs import tiny_run

    at = _page(_app("Trainer"), "training")
    # A fresh clone: nothing in the runs folder, but the demo model's run ships in runs/ and is shown; looking
    # created no runs folder.
    assert not _errors(at) and not any("No training runs" in i.value for i in at.info)
    shown = at.selectbox(key="tr.run")
    assert any(o.startswith("demo64 · ") for o in shown.options) and not Path(env["ATELIER_RUNS"]).exists()
    continue_demo = next(c.value for c in at.code if "--resume auto" in c.value)
    assert continue_demo.startswith("mkdir -p ") and f"--outdir {env['ATELIER_RUNS']}/{shown.value}" in continue_demo

    run_dir = Path(env["ATELIER_RUNS"]) / "spring-looks"
    tiny_run(run_dir, quality_samples=16)
    at = _page(_app("Trainer"), "training")
    assert not _errors(at) and not at.error
    assert at.selectbox(key="tr.run").value == "spring-looks"
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Progress"] == "0.032 kimg" and metrics["Best Fréchet"] != "—"
    assert any("--resume auto" in c.value and str(run_dir) in c.value for c in at.code)
    at.button(key="tr.best").click().run()
    assert not _errors(at) and not at.error
    assert any(s.value.startswith("Registered spring") and "looks · 0 kimg" in s.value for s in at.success), at.success
    from annotator import services
    from db import queries as q
    from db.engine import read_session
    with read_session(services.database_url()) as session:
        assert any(m.name == "spring-looks · 0 kimg" for m in q.list_models(session))

    at.text_input(key="tr.folder").input(str(run_dir / "missing")).run()
    assert any("not a folder" in e.value for e in at.error)


def test_a_teammates_category_does_not_prefill_your_form(env):
    from db import queries as q
    from db.engine import write_session

    at = _app("Ines")
    with write_session() as session:  # a component Ines has not opened yet
        component_id = q.list_components(session, q.get_component(session, at.session_state["rv.current"]).set_id
                                         )[300].id
        q.ensure_reviewer(session, "Jon")
        q.record_review(session, "Jon", component_id, "approve", label="teammate", category="other")
    at.session_state["rv.current"] = component_id
    at.run()
    assert at.title[0].value == "Component 300"
    # Ines has not reviewed it: her form starts from the scores' suggestion (none here), never from Jon's "other".
    assert at.selectbox(key=f"rv.category.{component_id}").value is None
    assert at.text_input(key=f"rv.label.{component_id}").value == ""
    assert "other" in set(at.dataframe[0].value["category"])  # Jon's review is shown among the teammates'


def test_publish_form_keeps_its_range_after_visiting_another_page(env):
    from annotator import services
    from db import queries as q
    from db.engine import write_session

    ctx = services.bootstrap()
    with write_session(ctx.url) as session:
        q.ensure_reviewer(session, "Kai")
        component = q.list_components(session, ctx.component_set.id)[7]
        q.record_review(session, "Kai", component.id, "approve", label="hem", layer_range=(0, 4))
    at = _page(_app("Kai"), "directions")
    if any(s.key == "pub.choice" for s in at.selectbox):
        at.selectbox(key="pub.choice").select(next(c for c in at.selectbox(key="pub.choice").options
                                                   if c.startswith("Component 7 ·"))).run()
    first = at.slider(key=f"pub.strength.{component.id}").value
    assert isinstance(first, tuple) and first[0] < 0 < first[1]  # the measured span, both sides
    at = _page(_page(at, "generate"), "directions")
    if any(s.key == "pub.choice" for s in at.selectbox):
        at.selectbox(key="pub.choice").select(next(c for c in at.selectbox(key="pub.choice").options
                                                   if c.startswith("Component 7 ·"))).run()
    assert not _errors(at)
    assert at.slider(key=f"pub.strength.{component.id}").value == first


def test_review_shows_why_a_component_is_there_and_the_suggestion_prefills_the_form(env):
    from db import queries as q
    from db.engine import write_session
    from db.records import ComponentScores

    at = _app("Kai")
    with write_session() as session:  # a component Kai has not opened yet (its form does not exist yet)
        set_id = q.get_component(session, at.session_state["rv.current"]).set_id
        component_id = q.list_components(session, set_id)[200].id
        q.update_scores(session, set_id, [ComponentScores(
            index=200, effect=0.05, consistency=0.61, locality=0.4, locality_where="bottom-centre",
            colour_share=0.1, layer_sensitivity="all", suggested_category="background", priority=0.7, dead=False,
            score_details={"reason": "12% of the image changes visibly; [a link](https://evil.example)",
                           "best": {"visible": 0.123}})])
    at.session_state["rv.current"] = component_id
    at.run()
    assert not _errors(at)
    assert "Why here: 12% of the image changes visibly; [a link](https://evil.example)" in [t.value for t in at.text]
    assert [m.value for m in at.metric if m.label == "Visible"] == ["12.3%"]
    # "background" is one of the form's categories now, so the scores' suggestion pre-fills it
    assert at.selectbox(key=f"rv.category.{component_id}").value == "background"
