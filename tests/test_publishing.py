"""Publishing is checked (model/directions/publishing.py): dead sliders, conflicts and disagreeing approvals are refused
with the reason unless forced (and the override is recorded), from the app's functions and from `atelier publish`;
out-of-date and conflicted directions are flagged; looks keep the directions they were made with.

The demo generator (64 px) and its real SeFa components: a slider on layers where a component acts must pass and
one on layers where it does not must be refused, so the tests first measure which of its layer groups is which.
"""
from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import assert_clean_user_error
from db import queries as q
from db.records import ComponentInfo, LookEdit
from core.errors import InvalidInput
from db.engine import dispose_engines, read_session, write_session
from db.migrate import ensure_current
from model.directions import publishing
from workflows import publishing as publish_flow
from core.settings import DEMO_MODEL_PATH

runner = CliRunner()
SEEDS = [11, 22, 33, 44]
COMPONENTS = 6


@pytest.fixture(scope="module")
def demo():
    """The demo generator and its first SeFa components (discovery once per module)."""
    from annotator.services import layer_presets
    from model.directions import discovery
    from model.network.render import Renderer

    renderer = Renderer(DEMO_MODEL_PATH, device="cpu")
    found = discovery.discover(renderer, "sefa", "all")
    return renderer, found, layer_presets(renderer)


@pytest.fixture
def db(tmp_path, demo):
    """A fresh database with the demo model, a set of its first components and two reviewers."""
    renderer, found, _ = demo
    url = f"sqlite:///{tmp_path / 'atelier.db'}"
    ensure_current(url)
    arch = {"z_dim": renderer.z_dim, "w_dim": renderer.w_dim, "c_dim": renderer.c_dim, "num_ws": renderer.num_ws,
            "img_resolution": renderer.resolution}
    with write_session(url) as session:
        model = q.register_model(session, "demo", str(DEMO_MODEL_PATH), renderer.fingerprint, arch)
        cset = q.add_component_set(session, model.id, "sefa", {}, found.sample_count, found.vectors[:COMPONENTS],
                                   found.sigmas[:COMPONENTS], found.values[:COMPONENTS], SEEDS)
        ids = [c.id for c in q.list_components(session, cset.id)]
        for name in ("Ana", "Eve"):
            q.ensure_reviewer(session, name)
    yield url, model, ids
    dispose_engines()


@pytest.fixture(scope="module")
def dead_and_alive(demo):
    """(component index, layers where it changes nothing visible, layers where it clearly acts), measured."""
    renderer, found, presets = demo
    for index in range(COMPONENTS):
        vector, sigma = found.vectors[index], float(found.sigmas[index])
        measured = {name: publishing.measure_effect(renderer, vector, sigma, span, (-3.0, 3.0), SEEDS).measured
                    for name, span in presets.items() if name != "all"}
        weakest, strongest = min(measured, key=measured.get), max(measured, key=measured.get)
        if measured[weakest] < publishing.VISIBLE_CHANGE / 2 and measured[strongest] > 2 * publishing.VISIBLE_CHANGE:
            return index, presets[weakest], presets[strongest]
    pytest.fail(f"none of the demo model's first {COMPONENTS} components is dead on one layer group and alive on "
                "another; the fixture needs a different model")


def _approve(url: str, who: str, component_id: int, layers: tuple[int, int], label: str = "colour") -> None:
    with write_session(url) as session:
        q.record_review(session, who, component_id, "approve", label=label, category="colour", layer_range=layers,
                        strength_range=(-3.0, 3.0))


def _publish_cli(url: str, index: int, *extra: str):
    from cli.main import app

    return runner.invoke(app, ["publish", str(index), "--database", url, "--reviewer", "Ana", *extra])


def test_dead_slider_is_refused_on_the_cli_and_force_records_the_override(db, dead_and_alive):
    url, model, ids = db
    index, dead, alive = dead_and_alive
    _approve(url, "Ana", ids[index], dead)

    refused = _publish_cli(url, index)
    assert_clean_user_error(refused, "changes nothing visible", f"layers {dead[0]}–{dead[1] - 1}", "--force")
    with read_session(url) as session:
        assert q.active_directions(session, model.id) == []  # nothing half-written

    forced = _publish_cli(url, index, "--force", "--name", "tint")
    assert forced.exit_code == 0, forced.output
    assert "overridden: The slider changes nothing visible" in forced.output
    with read_session(url) as session:
        [direction] = q.active_directions(session, model.id)
    assert direction.name == "tint" and direction.layer_range == dead
    assert len(direction.override_reasons) == 1 and "changes nothing visible" in direction.override_reasons[0]
    assert direction.measured_effect is not None and direction.measured_effect < publishing.VISIBLE_CHANGE

    from cli.main import app

    unpublished = runner.invoke(app, ["unpublish", "tint", "--database", url, "--reviewer", "Eve"])
    assert unpublished.exit_code == 0, unpublished.output
    with read_session(url) as session:
        assert q.active_directions(session, model.id) == []
        assert q.direction_history(session, model.id)[0].unpublished_by == "Eve"

    # On the layers where it acts, the same component passes without an override.
    passed = _publish_cli(url, index, "--layers", f"{alive[0]}-{alive[1] - 1}", "--name", "tint")
    assert passed.exit_code == 0, passed.output
    with read_session(url) as session:
        [direction] = q.active_directions(session, model.id)
    assert direction.layer_range == alive and direction.override_reasons == ()
    assert direction.measured_effect > publishing.VISIBLE_CHANGE


def test_cli_refuses_bad_options_and_unknown_names_cleanly(db):
    from cli.main import app

    url, _, _ = db
    assert_clean_user_error(_publish_cli(url, 0, "--layers", "nine"), "--layers 'nine' is not FIRST-LAST")
    assert_clean_user_error(_publish_cli(url, 0, "--strength", "3,-3"), "maximum below its minimum")
    assert_clean_user_error(_publish_cli(url, 99), "has no component 99")
    assert_clean_user_error(_publish_cli(url, 1), "Component 1 is unreviewed, not approved")
    assert_clean_user_error(runner.invoke(app, ["unpublish", "nope", "--database", url]),
                            "no published direction is named 'nope'")


def test_conflict_and_disagreeing_layers_are_refused_with_reasons(db, demo, dead_and_alive):
    renderer = demo[0]
    url, model, ids = db
    index, _, alive = dead_and_alive
    _approve(url, "Ana", ids[index], alive)
    _approve(url, "Eve", ids[index], (0, renderer.num_ws))
    with read_session(url) as session:
        proposal = publish_flow.propose(session, renderer, model.id, ids[index], layer_range=alive)
    assert len(proposal.refusals) == 1
    assert "disagree on the layers" in proposal.refusals[0] and "Ana" in proposal.refusals[0]

    with write_session(url) as session:
        q.record_review(session, "Eve", ids[index], "reject")
    with read_session(url) as session:
        proposal = publish_flow.propose(session, renderer, model.id, ids[index], layer_range=alive)
        assert [r for r in proposal.refusals if "in conflict" in r and "Eve rejects" in r]
    with pytest.raises(publishing.PublishRefused, match="in conflict"):
        with write_session(url) as session:
            publish_flow.publish(session, proposal, "Ana")
    with read_session(url) as session:
        assert q.active_directions(session, model.id) == []


def test_reapproval_on_other_layers_marks_the_direction_out_of_date_and_update_mends_it(db, demo, dead_and_alive):
    from annotator import directions as page, generate

    renderer = demo[0]
    url, model, ids = db
    index, dead, alive = dead_and_alive
    _approve(url, "Ana", ids[index], dead)
    published = page.publish(url, renderer, "Ana", model.id, ids[index], "colour", "colour", dead, (-2.0, 2.0),
                             force=True)
    assert page.flags(url, model.id) == {}

    _approve(url, "Ana", ids[index], alive)  # Ana looks again and approves on the layers where it acts
    flag = page.flags(url, model.id)[published.id]
    assert flag.out_of_date and "Ana approved layers" in flag.out_of_date and flag.approved_layers == alive
    assert flag.conflict is None

    updated = page.update(url, renderer, "Eve", published.id)
    assert updated.name == "colour" and updated.layer_range == alive and updated.override_reasons == ()
    with read_session(url) as session:
        history = q.direction_history(session, model.id)
    assert [(d.id, d.active) for d in history] == [(published.id, False), (updated.id, True)]
    assert page.flags(url, model.id) == {}

    # A conflict afterwards is flagged on the direction and becomes the mark on Generate's slider.
    with write_session(url) as session:
        q.record_review(session, "Eve", ids[index], "reject")
    assert "Eve rejects" in page.flags(url, model.id)[updated.id].conflict
    marks = generate.conflict_marks(url, model.id)
    assert list(marks) == [updated.id] and "in conflict" in marks[updated.id]


def test_plausible_span_stops_before_the_figure_fades_or_the_change_jumps():
    steps = np.arange(0.5, 3.01, 0.5)
    smooth = steps * 0.02
    steady = np.ones_like(steps)
    assert publishing._side(smooth, steady, 1.0, steps)[0] == 3.0
    fading = np.array([1.0, 0.9, 0.8, 0.5, 0.3, 0.2])  # under 60 % of the unedited contrast from 2σ on
    reach, why = publishing._side(smooth, fading, 1.0, steps)
    assert reach == 1.5 and "fades beyond 2σ" in why
    jumping = np.array([0.01, 0.02, 0.03, 0.2, 0.21, 0.22])
    reach, why = publishing._side(jumping, steady, 1.0, steps)
    assert reach == 1.5 and "jumps at 2σ" in why
    early = np.array([0.2, 0.2, 0.2, 0.2, 0.2, 0.2])  # fades at once: the slider still gets the floor
    assert publishing._side(smooth, early, 1.0, steps)[0] == publishing.SPAN_FLOOR


def test_plausible_span_on_the_demo_model_keeps_the_figure(demo):
    renderer, found, presets = demo
    for index in range(3):
        vector, sigma = found.vectors[index], float(found.sigmas[index])
        span = publishing.plausible_span(renderer, vector, sigma, presets["all"], SEEDS)
        assert -publishing.SPAN_LIMIT <= span.low <= -publishing.SPAN_FLOOR
        assert publishing.SPAN_FLOOR <= span.high <= publishing.SPAN_LIMIT
        effect = publishing.measure_effect(renderer, vector, sigma, presets["all"], (span.low, span.high), SEEDS,
                                           columns=2)
        base = publishing._render_steps(renderer, vector, sigma, presets["all"], (0.0,), SEEDS, 0.7)
        unedited = publishing._figure_contrast(base).mean()
        ends = publishing._figure_contrast(effect.images).mean(axis=0)
        for side, reach in ((0, span.low), (1, span.high)):
            if abs(reach) > publishing.SPAN_FLOOR:
                assert ends[side] >= publishing.FADE_RATIO * unedited, (index, span)


def test_saved_look_keeps_its_direction_after_republishing(db, demo, dead_and_alive):
    from annotator import directions as page, generate
    from workflows.sliders import direction_sigma

    renderer = demo[0]
    url, model, ids = db
    index, dead, alive = dead_and_alive
    _approve(url, "Ana", ids[index], alive)
    first = page.publish(url, renderer, "Ana", model.id, ids[index], "coat tint", "colour", alive, (-3.0, 3.0))

    def today() -> list[generate.Slider]:
        with read_session(url) as session:
            return generate.sliders(q.active_directions(session, model.id), lambda d: direction_sigma(session, d))

    state = generate.LookState(seed=5, psi=0.7, values=((first.id, 2.5),))
    saved = generate.save(url, model.id, "Ana", "coat with stripes", state, today())
    with read_session(url) as session:
        look = q.get_look(session, saved.id)
    assert look.model_fingerprint == renderer.fingerprint
    [edit] = look.edits
    assert edit.frozen and edit.layer_range == alive and np.array_equal(edit.vector, first.vector)
    as_saved = generate.render_saved_jpeg(renderer, look, today())
    assert generate.look_differences(look, today(), renderer.fingerprint) == []

    # Re-published under the same name on other layers: the saved look must not change, and the page says so.
    with write_session(url) as session:
        q.unpublish_direction(session, first.id, "Ana")
    page.publish(url, renderer, "Ana", model.id, ids[index], "coat tint", "colour", dead, (-3.0, 3.0), force=True)
    with read_session(url) as session:
        look = q.get_look(session, saved.id)
    differences = generate.look_differences(look, today(), renderer.fingerprint)
    assert len(differences) == 1 and "now moves layers" in differences[0]
    generate._image_cache.items.clear()  # render again from the stored record, not from the cache
    assert generate.render_saved_jpeg(renderer, look, today()) == as_saved
    reapplied, _ = generate.look_from_saved(look, today())
    assert generate.render_jpeg(renderer, reapplied, today()) != as_saved  # today's sliders do differ


def test_looks_refuse_a_partial_direction(db):
    url, model, _ = db
    with write_session(url) as session, pytest.raises(InvalidInput, match="only part of its direction"):
        q.save_look(session, model.id, "Ana", "half", 1, 0.7, [LookEdit("x", 1.0, None, vector=np.ones(512))])


def test_component_opens_on_its_own_layers():
    from annotator.review import opening_layers

    presets = {"coarse": (0, 3), "middle": (3, 7), "fine": (7, 10), "all": (0, 10)}
    component = ComponentInfo(id=1, set_id=1, index=5, w_dim=512, sigma=1.0, eigenvalue=None, effect=None,
                                consistency=None, locality=None, locality_where=None, colour_share=None,
                                layer_sensitivity="fine", suggested_category=None, priority=None, dead=False)
    assert opening_layers(component, None, presets).preset == "fine"
    assert opening_layers(component, (3, 7), presets).preset == "middle"  # what you approved wins
    custom = opening_layers(component, (2, 5), presets)
    assert (custom.preset, custom.custom) == ("custom", (2, 5))
    unscored = ComponentInfo(**{**component.__dict__, "layer_sensitivity": None})
    assert opening_layers(unscored, None, presets).preset == "all"
