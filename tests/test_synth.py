"""The synthetic runway generator: deterministic, visibly driven by its factors, and written in stylegan2-ada form."""
from __future__ import annotations

import colorsys
import dataclasses
import io
import json
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.errors import AtelierError
from scrape.dataset import image_name
from scrape.synth import (RunwayFactors, frame_for, palette, preview_grid, read_factors, render_batch,
                          render_runway, sample_factors, shard_seeds, write_dataset)

BASE = RunwayFactors(garment="dress", sleeve=0.5, length=0.5, hue=0.0, saturation=0.65, value=0.75, pattern="plain",
                     layer="none", height=0.5, x_offset=0.0, skin=0.2, hair=0.7, background=0.5)


def vary(**changes: object) -> RunwayFactors:
    return dataclasses.replace(BASE, **changes)


def pixel(image: np.ndarray, factors: RunwayFactors, x: float, y: float) -> np.ndarray:
    """The colour at head-unit point (x, y) of the figure drawn from ``factors``."""
    px, py = frame_for(factors, image.shape[0]).pt(x, y)
    return image[int(py), int(px)].astype(int)


def close(color: np.ndarray, target: tuple[int, int, int], tolerance: int = 30) -> bool:
    return int(np.abs(color - np.array(target)).max()) <= tolerance


def torso(image: np.ndarray, factors: RunwayFactors) -> np.ndarray:
    """Chest-to-waist block of the main garment, clear of arms and neckline."""
    frame = frame_for(factors, image.shape[0])
    (x0, y0), (x1, y1) = frame.pt(-0.45, 1.7), frame.pt(0.45, 2.75)
    return image[int(y0):int(y1), int(x0):int(x1)].astype(float)


# --- determinism and shapes ----------------------------------------------------------------------------------------


def test_same_seed_same_bytes_and_different_seeds_differ():
    assert sample_factors(7) == sample_factors(7)
    first, again = render_runway(sample_factors(7)), render_runway(sample_factors(7))
    assert first.tobytes() == again.tobytes()
    others = [render_runway(sample_factors(seed)) for seed in (8, 9, 10)]
    assert all(other.tobytes() != first.tobytes() for other in others)


@pytest.mark.parametrize("resolution", [32, 64, 128])
def test_resolutions(resolution):
    images, factors = render_batch([1, 2], resolution)
    assert images.shape == (2, resolution, resolution, 3) and images.dtype == np.uint8
    assert factors == [sample_factors(1), sample_factors(2)]
    # Light plain background at the corners, a figure (darker pixels) in the middle column.
    assert images[:, 0, 0].min() > 180
    assert images[:, :, resolution // 2].min() < 120


@pytest.mark.parametrize("resolution", [0, 8, 48, 100])
def test_bad_resolution_is_refused(resolution):
    with pytest.raises(AtelierError, match="power of two"):
        render_runway(BASE, resolution)


def test_vector_and_dict_round_trip():
    for seed in range(20):
        factors = sample_factors(seed)
        vector = factors.to_vector()
        assert vector.shape == (len(RunwayFactors.VECTOR_NAMES),) and vector.dtype == np.float32
        back = RunwayFactors.from_vector(vector)
        assert back.garment == factors.garment and back.pattern == factors.pattern and back.layer == factors.layer
        assert back.hue == pytest.approx(factors.hue, abs=1e-5)
        assert RunwayFactors.from_dict(factors.to_dict()) == dataclasses.replace(
            factors, **{k: round(v, 6) for k, v in dataclasses.asdict(factors).items() if isinstance(v, float)})
    assert list(RunwayFactors.FACTOR_NAMES) == [f.name for f in dataclasses.fields(RunwayFactors)]


def test_unknown_category_is_refused():
    with pytest.raises(AtelierError, match="garment 'jumpsuit'"):
        vary(garment="jumpsuit")


def test_marginals():
    samples = [sample_factors(seed) for seed in range(3000)]
    share = lambda key, value: np.mean([getattr(f, key) == value for f in samples])  # noqa: E731
    assert share("pattern", "plain") == pytest.approx(0.55, abs=0.04)
    assert share("layer", "none") == pytest.approx(0.60, abs=0.04)
    for garment in RunwayFactors.GARMENTS:
        assert share("garment", garment) == pytest.approx(0.25, abs=0.04)
    for key in ("sleeve", "length", "hue", "saturation", "value", "height", "skin", "hair", "background"):
        values = [getattr(f, key) for f in samples]
        assert 0.0 <= min(values) and max(values) <= 1.0
    assert all(-1.0 <= f.x_offset <= 1.0 for f in samples)


# --- factors are visible at 64 px ----------------------------------------------------------------------------------


def test_sleeve_covers_the_forearm_only_when_long():
    short, long = vary(sleeve=0.0), vary(sleeve=1.0)
    pal = palette(BASE)
    forearm = (1.27, 3.3)
    assert close(pixel(render_runway(short), short, *forearm), pal.skin)
    assert close(pixel(render_runway(long), long, *forearm), pal.main)


def test_hem_length_covers_the_shin_only_when_long():
    for garment in ("dress", "top_skirt", "top_trousers", "coat"):
        short, long = vary(garment=garment, length=0.0), vary(garment=garment, length=1.0)
        pal = palette(short)
        shin = (0.36, 6.2)
        assert close(pixel(render_runway(short), short, *shin), pal.skin), garment
        expected = pal.main if garment in ("dress", "coat") else pal.bottom
        assert close(pixel(render_runway(long), long, *shin), expected), garment


def test_patterns_add_high_frequency_energy_inside_the_torso():
    def energy(pattern: str) -> float:
        block = torso(render_runway(vary(pattern=pattern)), vary(pattern=pattern)).mean(axis=2)
        return float(np.abs(np.diff(block, axis=0)).mean() + np.abs(np.diff(block, axis=1)).mean())

    plain = energy("plain")
    assert plain < 2.0
    for pattern in ("stripes", "dots", "check"):
        assert energy(pattern) > plain + 15.0, pattern


def test_stripes_are_horizontal():
    block = torso(render_runway(vary(pattern="stripes")), vary(pattern="stripes")).mean(axis=2)
    assert np.abs(np.diff(block, axis=0)).mean() > 4 * np.abs(np.diff(block, axis=1)).mean()


def test_hue_moves_the_garment_colour():
    for hue in (0.0, 0.33, 0.66):
        factors = vary(hue=hue)
        r, g, b = torso(render_runway(factors), factors).reshape(-1, 3).mean(axis=0) / 255.0
        measured = colorsys.rgb_to_hsv(r, g, b)[0]
        assert min(abs(measured - hue), 1 - abs(measured - hue)) < 0.03, hue


def test_outer_layer_covers_the_sides_of_the_torso():
    side = (0.62, 2.2)
    for layer in ("jacket", "long_coat"):
        factors = vary(layer=layer)
        assert close(pixel(render_runway(factors), factors, *side), palette(factors).outer), layer
    assert close(pixel(render_runway(BASE), BASE, *side), palette(BASE).main)
    # The long coat reaches below the knee; the jacket stops at the hip.
    below_knee = (0.95, 6.0)
    assert close(pixel(render_runway(vary(layer="long_coat")), BASE, *below_knee), palette(BASE).outer)
    assert close(pixel(render_runway(vary(layer="jacket")), BASE, *below_knee), palette(BASE).background)


def test_garment_kinds_look_different():
    images = [render_runway(vary(garment=g)).astype(int) for g in RunwayFactors.GARMENTS]
    for i in range(len(images)):
        for j in range(i + 1, len(images)):
            assert np.abs(images[i] - images[j]).max() > 60


def test_nuisance_factors_move_the_figure_and_the_background():
    left, right = render_runway(vary(x_offset=-1.0)), render_runway(vary(x_offset=1.0))
    column_mass = lambda img: (255 - img.mean(axis=(0, 2))).argmax()  # noqa: E731
    assert column_mass(left) < 32 < column_mass(right)
    assert render_runway(vary(background=0.0))[0, 0].mean() < render_runway(vary(background=1.0))[0, 0].mean()


# --- dataset files -------------------------------------------------------------------------------------------------


def test_zip_dataset_in_stylegan2_ada_layout(tmp_path):
    out = write_dataset(tmp_path / "runway.zip", 12, seed0=100, progress=False)
    with zipfile.ZipFile(out) as archive:
        names = sorted(n for n in archive.namelist() if n.endswith(".png"))
        meta = json.loads(archive.read("dataset.json"))
        first = np.asarray(Image.open(io.BytesIO(archive.read(names[0]))))
    assert names == [image_name(i) for i in range(12)] and names[0] == "00000/img00000000.png"
    assert meta["labels"] == [[image_name(i), sample_factors(100 + i).garment_index] for i in range(12)]
    assert [name for name, _ in meta["factors"]] == names
    assert meta["factor_names"] == list(RunwayFactors.FACTOR_NAMES)
    assert meta["class_names"] == list(RunwayFactors.GARMENTS)
    recorded = dict(read_factors(out))
    assert recorded[names[3]].garment == sample_factors(103).garment
    assert recorded[names[3]].sleeve == pytest.approx(sample_factors(103).sleeve, abs=1e-6)
    assert np.array_equal(first, render_runway(sample_factors(100)))
    assert [p.name for p in tmp_path.iterdir()] == ["runway.zip"]  # no temporary left behind


def test_same_seeds_give_a_byte_identical_zip(tmp_path):
    one = write_dataset(tmp_path / "a.zip", 5, progress=False).read_bytes()
    assert one == write_dataset(tmp_path / "b.zip", 5, workers=2, progress=False).read_bytes()


def test_folder_dataset_without_labels(tmp_path):
    out = write_dataset(tmp_path / "runway", 3, resolution=32, conditional_on=None, progress=False)
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["labels"] is None and len(meta["factors"]) == 3
    assert Image.open(out / "00000" / "img00000002.png").size == (32, 32)


def test_existing_output_needs_overwrite(tmp_path):
    out = write_dataset(tmp_path / "runway.zip", 2, progress=False)
    with pytest.raises(AtelierError, match="--force"):
        write_dataset(out, 2, progress=False)
    write_dataset(out, 3, overwrite=True, progress=False)
    assert len(read_factors(out)) == 3
    unrelated = tmp_path / "notes"
    unrelated.mkdir()
    (unrelated / "todo.txt").write_text("keep me")
    with pytest.raises(AtelierError, match="no dataset.json"):
        write_dataset(unrelated, 2, overwrite=True, progress=False)
    assert (unrelated / "todo.txt").exists()


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(AtelierError, match="count"):
        write_dataset(tmp_path / "a.zip", 0)
    with pytest.raises(AtelierError, match="label"):
        write_dataset(tmp_path / "a.zip", 1, conditional_on="colour")
    assert not any(tmp_path.iterdir())


def test_preview_grid_lays_the_seeds_out_row_by_row():
    grid = preview_grid(7, 32, rows=2, cols=3)
    assert grid.shape == (64, 96, 3)
    for r in range(2):
        for c in range(3):
            tile = grid[r * 32:(r + 1) * 32, c * 32:(c + 1) * 32]
            assert np.array_equal(tile, render_runway(sample_factors(7 + r * 3 + c), 32)), (r, c)


# --- streaming -----------------------------------------------------------------------------------------------------


def test_shards_partition_the_seeds():
    shards = [list(shard_seeds(10, k, 3, count=20)) for k in range(3)]
    assert sorted(s for shard in shards for s in shard) == list(range(10, 30))


def test_stream_two_workers_yield_each_seed_once():
    import torch

    from scrape.synth import SyntheticRunwayStream

    count = 24
    expected = {render_runway(sample_factors(seed)).tobytes(): sample_factors(seed).garment_index
                for seed in range(count)}
    stream = SyntheticRunwayStream(resolution=64, seed0=0, conditional_on="garment", count=count)
    loader = torch.utils.data.DataLoader(stream, batch_size=None, num_workers=2)
    seen = []
    for image, label in loader:
        assert image.shape == (3, 64, 64) and image.dtype == torch.uint8
        key = image.permute(1, 2, 0).numpy().tobytes()
        assert expected[key] == label
        seen.append(key)
    assert len(seen) == count and set(seen) == set(expected)


def test_stream_ranks_are_disjoint_and_endless():
    from scrape.synth import SyntheticRunwayStream

    def first(rank: int, n: int) -> list[bytes]:
        stream = iter(SyntheticRunwayStream(resolution=32, rank=rank, world_size=2))
        return [next(stream)[0].numpy().tobytes() for _ in range(n)]

    rank0, rank1 = first(0, 3), first(1, 3)
    assert not set(rank0) & set(rank1)
    assert rank1[0] == np.ascontiguousarray(render_runway(sample_factors(1), 32).transpose(2, 0, 1)).tobytes()
    image, label = next(iter(SyntheticRunwayStream(resolution=32)))
    assert label == -1
    # A resumed run skips what it consumed; the stream survives pickling (DataLoader workers started by spawn).
    resumed = pickle.loads(pickle.dumps(SyntheticRunwayStream(resolution=32, rank=1, world_size=2, start=2)))
    assert next(iter(resumed))[0].numpy().tobytes() == first(1, 3)[2]
    with pytest.raises(AtelierError, match="rank"):
        SyntheticRunwayStream(rank=2, world_size=2)


# --- command line --------------------------------------------------------------------------------------------------


@pytest.fixture
def cli():
    from typer.testing import CliRunner

    from cli.main import app

    return lambda *args: CliRunner().invoke(app, ["synth", *args])


def test_cli_writes_dataset_and_preview(cli, tmp_path):
    result = cli("--out", str(tmp_path / "d.zip"), "--count", "5", "--resolution", "32", "--labels", "none",
                 "--preview", str(tmp_path / "grid.png"))
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "grid.png").size == (256, 256)
    with zipfile.ZipFile(tmp_path / "d.zip") as archive:
        assert json.loads(archive.read("dataset.json"))["labels"] is None


@pytest.mark.parametrize("args, message", [
    (["--count", "3", "--resolution", "48"], "power of two"),
    (["--count", "3", "--resolution", "8"], "power of two"),
    (["--count", "0"], "count must be at least 1"),
    (["--count", "3", "--labels", "colour"], "--labels 'colour'"),
    (["--count", "3", "--preview", "grid.txt"], "ending in .png, .jpg or .webp"),
])
def test_cli_bad_input_exits_1(cli, tmp_path, args, message):
    result = cli("--out", str(tmp_path / "d.zip"), *args)
    assert result.exit_code == 1
    assert message in result.stderr
    assert not (tmp_path / "d.zip").exists()


def test_cli_refuses_existing_output_without_force(cli, tmp_path):
    out = tmp_path / "d"
    out.mkdir()
    (out / "dataset.json").write_text("{}")
    result = cli("--out", str(out), "--count", "2")
    assert result.exit_code == 1 and "--force" in result.stderr
    assert cli("--out", str(out), "--count", "2", "--force").exit_code == 0
    assert len(read_factors(out)) == 2


def test_render_does_not_need_torch():
    import subprocess
    import sys

    code = ("import sys; sys.modules['torch'] = None; from scrape.synth import render_runway, sample_factors; "
            "render_runway(sample_factors(0))")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])
