"""The discovery commands end to end on the tiny reference generator: discover -> strip (cached) -> score."""
from __future__ import annotations

import numpy as np
from typer.testing import CliRunner

from cli.main import app


def test_discover_strip_score(reference_dir, tmp_path):
    from db.engine import read_session
    from db.queries import list_components

    pkl = str(reference_dir / "sg2ada_tiny32.pkl")
    runner = CliRunner()
    result = runner.invoke(app, ["discover", "--method", "kmeans", "--k", "3", "--samples", "300", "--map", "0",
                                 "--network", pkl, "--out", str(tmp_path / "set.npz")])
    assert result.exit_code == 0, result.output
    set_id = int(result.stdout.strip().splitlines()[-1])
    out = tmp_path / "strip.png"
    args = ["strip", "--set", str(set_id), "--component", "1", "--steps", "3", "--out", str(out)]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "rendered" in first.stdout and out.exists()
    again = runner.invoke(app, args)
    assert "cached" in again.stdout
    bad = runner.invoke(app, ["strip", "--set", str(set_id), "--component", "9", "--out", str(out)])
    assert bad.exit_code == 1 and "component 9" in bad.stderr
    for name in ("strip.txt", "strip"):  # a format Pillow would refuse only after the render
        unknown = runner.invoke(app, args[:-1] + [str(tmp_path / name)])
        assert unknown.exit_code == 1 and "ending in .png, .jpg or .webp" in unknown.stderr, unknown.output
        assert not (tmp_path / name).exists()
    nested = tmp_path / "new" / "folder" / "strip.jpg"
    assert runner.invoke(app, args[:-1] + [str(nested)]).exit_code == 0
    assert nested.read_bytes()[:2] == b"\xff\xd8"  # JPEG, in a folder made for it
    scored = runner.invoke(app, ["score", "--set", str(set_id), "--seeds", "2"])
    assert scored.exit_code == 0, scored.output
    with read_session() as session:
        comps = list_components(session, set_id)
    assert len(comps) == 3 and all(c.priority is not None and c.suggested_category for c in comps)
    assert np.isfinite([c.effect for c in comps]).all()


def test_strip_of_a_conditional_model_takes_a_class(reference_dir, tmp_path):
    pkl = str(reference_dir / "sg2ada_tiny32_cond.pkl")
    runner = CliRunner()
    result = runner.invoke(app, ["discover", "--method", "sefa", "--samples", "300", "--network", pkl])
    assert result.exit_code == 0, result.output
    set_id = result.stdout.strip().splitlines()[-1]
    base = ["strip", "--set", set_id, "--component", "0", "--steps", "3", "--network", pkl]
    missing = runner.invoke(app, base + ["--out", str(tmp_path / "a.png")])
    assert missing.exit_code == 1 and "class-conditional" in missing.stderr
    a = runner.invoke(app, base + ["--class", "0", "--out", str(tmp_path / "a.png")])
    b = runner.invoke(app, base + ["--class", "2", "--out", str(tmp_path / "b.png")])
    assert a.exit_code == 0 and b.exit_code == 0, a.output + b.output
    assert (tmp_path / "a.png").read_bytes() != (tmp_path / "b.png").read_bytes()


def test_discover_refuses_a_duplicate_set_unless_again(reference_dir):
    from db.engine import read_session
    from db.queries import list_component_sets

    pkl = str(reference_dir / "sg2ada_tiny32.pkl")
    runner = CliRunner()
    args = ["discover", "--method", "sefa", "--samples", "300", "--network", pkl]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    set_id = int(first.stdout.strip().splitlines()[-1])
    duplicate = runner.invoke(app, args)
    assert duplicate.exit_code == 1 and f"set {set_id} already holds these" in duplicate.stderr, duplicate.output
    assert "--again" in duplicate.stderr
    with read_session() as session:
        assert [s.id for s in list_component_sets(session)] == [set_id]  # nothing stored
    again = runner.invoke(app, args + ["--again"])
    assert again.exit_code == 0 and f"second copy of set {set_id}" in again.stderr, again.output
    with read_session() as session:
        assert len(list_component_sets(session)) == 2


def test_strip_uses_the_apps_truncation_by_default(reference_dir, tmp_path):
    pkl = str(reference_dir / "sg2ada_tiny32.pkl")
    runner = CliRunner()
    set_id = runner.invoke(app, ["discover", "--method", "sefa", "--samples", "300", "--network", pkl]
                           ).stdout.strip().splitlines()[-1]
    base = ["strip", "--set", set_id, "--component", "0", "--steps", "3"]
    outputs = {}
    for name, extra in (("default", []), ("app", ["--trunc", "0.7"]), ("none", ["--trunc", "1"])):
        result = runner.invoke(app, base + extra + ["--out", str(tmp_path / f"{name}.png")])
        assert result.exit_code == 0, result.output
        outputs[name] = (tmp_path / f"{name}.png").read_bytes()
    assert outputs["default"] == outputs["app"] != outputs["none"]
    bad = runner.invoke(app, base + ["--trunc", "5", "--out", str(tmp_path / "x.png")])
    assert bad.exit_code == 1 and "--trunc 5" in bad.stderr and not (tmp_path / "x.png").exists()
