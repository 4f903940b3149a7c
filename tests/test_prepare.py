"""Preparation, end to end on a real scrape of the fixture archive, up to a dataset the trainer accepts."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from conftest import assert_clean_user_error
from fixture_site import FixtureServer, build_archive, draw_look, write_profile
from core.errors import AtelierError
from cli.scrape_commands import register
from scrape.dataset import open_dataset, validate_dataset
from scrape.prepare import PrepareOptions, border_colour, figure_box, frame, prepare, whiten
from scrape.profile import load_profile
from scrape.scraper import scrape

KEPT_BY_SCRAPER = 19
DROPPED = {"studio-bleu/fall-2021/3.jpg": "too small", "casa-verde/fall-2021/1.jpg": "extreme aspect"}


@pytest.fixture(scope="module")
def scraped(tmp_path_factory) -> Path:
    """The fixture archive scraped once; preparation tests read it, never change it."""
    tmp = tmp_path_factory.mktemp("scraped")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NO_PROXY", "127.0.0.1")
        patch.setenv("no_proxy", "127.0.0.1")
        with FixtureServer(build_archive()) as server:
            profile = load_profile(write_profile(tmp / "site.toml", server.base_url))
            summary = scrape(profile, tmp / "out", progress=False)
    assert summary.images_kept == KEPT_BY_SCRAPER
    return tmp / "out"


def scraped_fields(scraped: Path) -> dict[str, dict]:
    lines = (scraped / "metadata.jsonl").read_text().splitlines()
    return {record["path"]: record for record in map(json.loads, lines)}


def test_scrape_to_conditional_zip_dataset_by_season(scraped, tmp_path):
    dst = tmp_path / "runway.zip"
    report = prepare(scraped, dst, PrepareOptions(resolution=64, label_field="season"), progress=False)

    info = validate_dataset(dst, decode=True)  # the check `atelier train` runs before training
    kept = KEPT_BY_SCRAPER - len(DROPPED)
    assert (info.num_images, info.resolution, info.channels) == (kept, 64, 3)
    assert info.labels and info.num_classes == 2 and info.class_names == ("Fall 2021", "Spring 2021")
    assert report.kept == kept

    # Dropped files are reported with their reason; nothing else was dropped.
    dropped = {d["url"].split("/media/")[1]: d["reason"] for d in report.dropped}
    assert {url: reason.split(":")[0] for url, reason in dropped.items()} == DROPPED
    saved = json.loads((tmp_path / "runway.report.json").read_text())
    assert saved["dropped_by_reason"] == {"too small": 1, "extreme aspect": 1} and saved["kept"] == kept

    # Every label is the season the scraper recorded for that image's source.
    fields = scraped_fields(scraped)
    with open_dataset(dst) as dataset:
        rows = list(dataset)
    assert len(rows) == kept
    by_name = {entry["name"]: entry for entry in report.images}
    for name, pixels, label in rows:
        assert pixels.shape == (64, 64, 3) and pixels.dtype == np.uint8
        season = fields[by_name[name]["source"]]["fields"]["season"]
        assert info.class_names[label] == season

    # The zip holds the stylegan2-ada names, dataset.json, and nothing half-written is left behind.
    with zipfile.ZipFile(dst) as archive:
        names = archive.namelist()
        meta = json.loads(archive.read("dataset.json"))
    assert "00000/img00000000.png" in names and "dataset.json" in names
    assert meta["label_field"] == "season" and len(meta["labels"]) == kept
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runway.contact_sheet.png", "runway.report.json",
                                                          "runway.zip"]
    sheet = Image.open(tmp_path / "runway.contact_sheet.png")
    assert sheet.width >= 4 * 64 and sheet.height >= 4 * 64


def test_crop_and_whiten_into_a_folder_labelled_by_category(scraped, tmp_path):
    dst = tmp_path / "crop"
    options = PrepareOptions(resolution=32, framing="crop", whiten_background=True, label_field="category",
                             sample=4)
    prepare(scraped, dst, options, progress=False)
    info = validate_dataset(dst)
    assert (info.resolution, info.num_classes, info.class_names) == (32, 2, ("Couture", "Ready-to-Wear"))
    assert (dst / "dataset.json").is_file() and (dst / "00000" / "img00000000.png").is_file()
    pixels = np.stack([array for _, array, _ in open_dataset(dst)])
    # Whitened backdrop in the corners; the figure still fills the middle.
    assert pixels[:, 0, 0].min() >= 250
    assert pixels[:, 12:20, 12:20].mean() < 240


def test_unlabelled_dataset_from_a_plain_folder_drops_unreadable_files(tmp_path):
    src = tmp_path / "photos"
    src.mkdir()
    draw_look(1, (150, 220)).save(src / "a.jpg")
    draw_look(2, (300, 200)).save(src / "b.png")
    (src / "c.jpg").write_bytes(b"<html>not a photo</html>")
    report = prepare(src, tmp_path / "plain.zip", PrepareOptions(resolution=16), progress=False)
    info = validate_dataset(tmp_path / "plain.zip")
    assert (info.num_images, info.labels, info.num_classes) == (2, False, 0)
    assert [(d["source"], d["reason"].split(":")[0]) for d in report.dropped] == [("c.jpg", "unreadable")]
    with pytest.raises(AtelierError, match="--label-field season needs metadata.jsonl"):
        prepare(src, tmp_path / "x.zip", PrepareOptions(resolution=16, label_field="season"), progress=False)


def test_destination_is_never_overwritten_without_force(scraped, tmp_path):
    dst = tmp_path / "ds.zip"
    prepare(scraped, dst, PrepareOptions(resolution=16, sample=0), progress=False)
    with pytest.raises(AtelierError, match="already exists.*--force"):
        prepare(scraped, dst, PrepareOptions(resolution=16), progress=False)
    prepare(scraped, dst, PrepareOptions(resolution=32, force=True, sample=0), progress=False)
    assert validate_dataset(dst).resolution == 32
    keep = tmp_path / "notes"
    keep.mkdir()
    (keep / "todo.txt").write_text("mine")
    with pytest.raises(AtelierError, match="not a dataset; refusing"):
        prepare(scraped, keep, PrepareOptions(resolution=16, force=True), progress=False)
    assert (keep / "todo.txt").read_text() == "mine"


@pytest.mark.parametrize("options, message", [
    (PrepareOptions(resolution=100), "not a power of two"),
    (PrepareOptions(framing="zoom"), "--framing 'zoom' is unknown"),
    (PrepareOptions(max_aspect=0.5), "--max-aspect"),
])
def test_bad_options_are_refused(scraped, tmp_path, options, message):
    with pytest.raises(AtelierError, match=message):
        prepare(scraped, tmp_path / "ds.zip", options, progress=False)


def test_no_survivors_is_an_error_and_leaves_no_dataset(scraped, tmp_path):
    with pytest.raises(AtelierError, match="No image .* survived"):
        prepare(scraped, tmp_path / "ds.zip", PrepareOptions(resolution=16, min_size=5000), progress=False)
    assert list(tmp_path.iterdir()) == []


def test_framing_pads_with_the_border_colour_or_crops_around_the_figure():
    photo = Image.new("RGB", (200, 300), (200, 190, 180))
    photo.paste((20, 30, 40), (120, 100, 160, 200))  # the "figure": 40 x 100, right of centre
    colour = border_colour(photo)
    assert colour == (200, 190, 180)
    assert figure_box(photo, colour) == (120, 100, 160, 200)
    padded = frame(photo, "pad", colour)
    # The photo sits centred on a 300 x 300 backdrop, so the figure moves right by (300 - 200) / 2.
    assert padded.size == (300, 300) and padded.getpixel((10, 150)) == colour
    assert padded.getpixel((50 + 140, 150)) == (20, 30, 40)
    cropped = frame(photo, "crop", colour)
    side = cropped.width
    assert cropped.size == (side, side) and 100 <= side <= 120  # figure height plus a small margin
    assert cropped.getpixel((side // 2, side // 2)) == (20, 30, 40)
    assert frame(Image.new("RGB", (50, 50), colour), "crop", colour) is None  # nothing to crop around
    white = whiten(photo, colour)
    assert white.getpixel((5, 5)) == (255, 255, 255) and white.getpixel((130, 150)) == (20, 30, 40)


def test_cli_prepare_prints_the_summary_and_errors_cleanly(scraped, tmp_path):
    app = typer.Typer()
    register(app)
    runner = CliRunner()
    dst = tmp_path / "cli.zip"
    result = runner.invoke(app, ["prepare", str(scraped), str(dst), "--resolution", "16", "--label-field", "season",
                                 "--quiet"])
    assert result.exit_code == 0, result.output
    assert "Prepared 17 images at 16px" in result.output and "dropped (too small): 1" in result.output
    assert "classes from 'season': 0=Fall 2021" in result.output
    result = runner.invoke(app, ["prepare", str(tmp_path / "missing"), str(tmp_path / "y.zip")])
    assert_clean_user_error(result, "is not a folder")


def test_the_trainer_reads_the_prepared_dataset(scraped, tmp_path):
    """The trainer's own data path (validation, labels as classes, batches) on a dataset made from the scrape."""
    from model.training.config import TrainConfig
    from model.training.data import open_training_data
    dst = tmp_path / "train.zip"
    prepare(scraped, dst, PrepareOptions(resolution=32, label_field="season", sample=0), progress=False)
    config = TrainConfig(data=str(dst), conditional=True)
    info, stream = open_training_data(config, 0, 1)
    assert (info.resolution, info.c_dim, info.num_images) == (32, 2, KEPT_BY_SCRAPER - len(DROPPED))
    image, label = next(stream)
    assert image.shape == (32, 32, 3) and label in (0, 1)
