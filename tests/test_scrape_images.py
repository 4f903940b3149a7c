"""Image checks: the real format from the bytes, decompression bombs, truncation, and the perceptual hash."""
from __future__ import annotations

import io

import pytest
from PIL import Image

from fixture_site import decompression_bomb, draw_look, jpeg_bytes, png_bytes
from scrape.images import NearDuplicateIndex, ImageRejected, check_image, hamming, perceptual_hash

FORMATS = ("JPEG", "PNG", "WEBP")
MAX_PIXELS = 10_000_000


def test_a_good_jpeg_is_checked_and_hashed():
    data = jpeg_bytes(draw_look(1))
    checked = check_image(data, MAX_PIXELS, FORMATS)
    assert (checked.format, checked.width, checked.height, checked.extension) == ("JPEG", 160, 240, "jpg")
    assert len(checked.sha256) == 64 and 0 <= checked.phash < 2**64


@pytest.mark.parametrize("data, reason", [
    (b"<!DOCTYPE html><html><body>not a picture</body></html>", "not an image"),
    (jpeg_bytes(draw_look(2))[:1200], "broken image"),
    (decompression_bomb(5000, 5000), "decompression bomb: declares 5000x5000"),  # caught by our own limit
    (decompression_bomb(20000, 20000), "decompression bomb"),  # beyond Pillow's own limit too
    (b"", "not an image"),
])
def test_bad_bytes_are_rejected_with_a_reason(data, reason):
    with pytest.raises(ImageRejected) as info:
        check_image(data, MAX_PIXELS, FORMATS)
    assert info.value.reason.startswith(reason)


def test_formats_outside_the_profile_are_refused():
    buffer = io.BytesIO()
    draw_look(3).save(buffer, "GIF")
    with pytest.raises(ImageRejected, match="format not accepted: GIF"):
        check_image(buffer.getvalue(), MAX_PIXELS, FORMATS)


def test_perceptual_hash_finds_near_copies_and_separates_different_looks():
    look = draw_look(4)
    base = perceptual_hash(look)
    near_copies = [
        Image.open(io.BytesIO(jpeg_bytes(look, quality=60))),
        look.point(lambda v: min(255, v + 6)),
        look.resize((320, 480), Image.Resampling.BICUBIC),
        Image.open(io.BytesIO(png_bytes(look))),
    ]
    for copy in near_copies:
        assert hamming(base, perceptual_hash(copy)) <= 4
    others = [perceptual_hash(draw_look(seed)) for seed in range(10, 30)]
    assert min(hamming(base, other) for other in others) > 8


def test_near_duplicate_index_grows_and_returns_the_closest():
    index = NearDuplicateIndex()
    assert index.nearest(123) is None
    for n in range(200):  # past the initial capacity, to exercise growth
        index.add(f"key{n}", n * 0x0101010101010101 % 2**64)
    key, distance = index.nearest(57 * 0x0101010101010101 % 2**64 ^ 0b101)
    assert (key, distance) == ("key57", 2)
    assert len(index) == 200


def test_the_profile_pixel_limit_replaces_pillows_and_messages_quote_it(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)  # a small stand-in for Pillow's ~89-megapixel limit
    data = jpeg_bytes(draw_look(5))  # 160x240 = 38,400 pixels: more than twice the stand-in, a hard error in Pillow
    assert check_image(data, 40_000, FORMATS).width == 160  # the profile allows more than Pillow: allowed
    for limit in (12_000, 30_000):  # refused by Pillow's check (set to twice ours) or by ours: both quote ours
        with pytest.raises(ImageRejected) as info:
            check_image(data, limit, FORMATS)
        assert info.value.reason.startswith("decompression bomb") and f"{limit:,}" in info.value.reason
        assert "10,000" not in info.value.reason and "10000" not in info.value.reason
    with pytest.raises(ImageRejected, match=r"more than 20,000 pixels \(limit \[images\] max_pixels\)"):
        check_image(decompression_bomb(1000, 1000), 20_000, FORMATS)
    assert Image.MAX_IMAGE_PIXELS == 10_000  # put back after every decode
