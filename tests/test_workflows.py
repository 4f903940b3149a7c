"""The use cases both front ends call (workflows/): one rule for a model's name, a set's review seeds and a slider's
default layers, whether the `atelier` commands or the app's pages do the job."""
from __future__ import annotations

import dataclasses
import shutil

import pytest
import torch

from db import queries as q
from db.engine import read_session, write_session
from db.migrate import ensure_current
from model.directions import discovery
from model.network.render import Renderer
from workflows import components, publishing, registry


@pytest.fixture
def url(tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'team.db'}"
    ensure_current(url)
    return url


@pytest.fixture(scope="module")
def tiny(reference_dir) -> Renderer:
    torch.set_num_threads(1)
    return Renderer(reference_dir / "sg2ada_tiny32.pkl", device="cpu")


def _sefa(renderer: Renderer, keep: int = 6) -> discovery.ComponentSet:
    """The strongest few SeFa components (scoring all 512 would only make the tests slower)."""
    found = discovery.sefa(renderer.G, "all", w_samples=discovery.sample_w(renderer, 200)[0],
                           fingerprint=renderer.fingerprint)
    return dataclasses.replace(found, vectors=found.vectors[:keep], values=found.values[:keep],
                               sigmas=found.sigmas[:keep])


def test_a_model_gets_the_same_name_from_the_cli_and_from_the_app(tmp_path, reference_dir, tiny):
    """`atelier discover` stores its set through the same registration as the Models page: the file's stem, and
    the fingerprint added when the name is taken by other weights."""
    cli_url, app_url = (f"sqlite:///{tmp_path / name}" for name in ("cli.db", "app.db"))
    for each in (cli_url, app_url):
        ensure_current(each)
    stored = components.store_component_set(_sefa(tiny), tiny, url=cli_url)
    registered = registry.register_model_file(reference_dir / "sg2ada_tiny32.pkl", None, app_url)
    with read_session(cli_url) as session:
        by_cli = q.get_model(session, stored.model_id)
    assert by_cli.name == registered.name == "sg2ada_tiny32"
    assert by_cli.architecture == registered.architecture == registry.architecture_of(tiny)

    # Other weights under the same file name: both paths keep the first name and mark the second with its weights.
    other_dir = tmp_path / "other"
    other_dir.mkdir()
    other_path = shutil.copyfile(reference_dir / "sg2ada_tiny32_cond.pkl", other_dir / "sg2ada_tiny32.pkl")
    other = Renderer(other_path, device="cpu")
    second = registry.register_model_file(other_path, None, app_url)
    with write_session(cli_url) as session:
        by_cli_second = registry.register_network(session, other, None, other_path)
    assert second.name == by_cli_second.model.name == f"sg2ada_tiny32 ({other.fingerprint[:8]})"
    assert by_cli_second.created
    with write_session(cli_url) as session:  # the same weights again: the same entry, not a third name
        again = registry.register_network(session, other, "something else", other_path)
    assert not again.created and again.model.id == by_cli_second.model.id


def test_a_new_set_gets_the_review_seeds_rule_of_its_model(url, tiny):
    """Distinct, sorted seeds from choose_review_seeds, seeded by the model: the same from the CLI and the app."""
    first = components.store_component_set(_sefa(tiny), tiny, url=url)
    second = components.store_component_set(_sefa(tiny), tiny, url=url)
    expected = discovery.choose_review_seeds(rng_seed=first.model_id)
    assert first.review_seeds == second.review_seeds == expected
    assert len(set(expected)) == len(expected) == discovery.DEFAULT_REVIEW_SEEDS and expected == sorted(expected)


def test_scores_are_stored_batch_by_batch_and_refuse_other_weights(url, tiny, reference_dir):
    info = components.store_component_set(_sefa(tiny), tiny, url=url)
    stored_batches: list[int] = []
    found = components.score_and_store(info.id, tiny, url, seeds=range(1000, 1002), refine=None, batch=4,
                                       progress=stored_batches.append)
    assert len(found) == info.component_count and sum(stored_batches) == info.component_count
    with read_session(url) as session:
        assert all(c.priority is not None for c in q.list_components(session, info.id))
    other = Renderer(reference_dir / "sg2ada_tiny32_cond.pkl", device="cpu")
    with pytest.raises(Exception, match="different weights"):
        components.score_and_store(info.id, other, url)


def test_candidates_and_proposals_start_from_the_same_layers(url, tiny):
    """When approvals disagree on the layers, the Directions page's form and `atelier publish` both start from
    every row (and publishing then names the disagreement); when they agree, both start from that range."""
    info = components.store_component_set(_sefa(tiny), tiny, url=url)
    with write_session(url) as session:
        model = q.get_model(session, info.model_id)
        first, second = q.list_components(session, info.id)[:2]
        for name in ("Ana", "Eve"):
            q.ensure_reviewer(session, name)
        q.record_review(session, "Ana", first.id, "approve", label="hem", layer_range=(0, 4))
        q.record_review(session, "Eve", first.id, "approve", label="hem", layer_range=(2, 6))
        q.record_review(session, "Ana", second.id, "approve", label="colour", layer_range=(4, 8))
        q.record_review(session, "Eve", second.id, "approve", label="colour", layer_range=(4, 8))
    with read_session(url) as session:
        listed = {c.component_id: c.layer_range for c in publishing.candidates(session, info.id, model)}
        disagreeing = publishing.propose(session, tiny, model.id, first.id)
        agreeing = publishing.propose(session, tiny, model.id, second.id)
    assert listed[first.id] == disagreeing.layer_range == (0, model.num_ws)
    assert any("disagree on the layers" in reason for reason in disagreeing.refusals)
    assert listed[second.id] == agreeing.layer_range == (4, 8)


def test_a_set_no_larger_than_the_refined_top_is_scored_in_one_full_pass(url, tiny):
    """Two passes pay off when the quick one spares work; refining every component is one full pass instead."""
    info = components.store_component_set(_sefa(tiny, keep=4), tiny, url=url)
    assert components.scoring_steps(info.id, tiny, refine=3, url=url) == 4 + 3
    assert components.scoring_steps(info.id, tiny, refine=4, url=url) == 4
    assert components.scoring_steps(info.id, tiny, url=url) == 4  # the default refines 128: more than the set holds
    found = components.score_and_store(info.id, tiny, url, seeds=range(1000, 1003), batch=4)
    assert all(reading.seeds == 3 for score in found for reading in score.readings if reading.layers == "all")
