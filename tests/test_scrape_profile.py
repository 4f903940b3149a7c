"""Site profiles: the shipped example loads, and every mistake names the key, the file and the fix."""
from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import AtelierError
from scrape.profile import load_profile

EXAMPLE = Path(__file__).resolve().parents[1] / "scrape" / "profiles" / "example-runway.toml"

MINIMAL = """\
[site]
start_urls = ["https://archive.example/designers/"]
contact = "mailto:team@example.com"

[selectors]
image = "img.look"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "site.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_example_profile_loads_with_every_metadata_field():
    profile = load_profile(EXAMPLE)
    assert profile.name == "example-runway"
    assert {rule.name for rule in profile.fields} == {"designer", "season", "year", "city", "category", "look"}
    assert profile.selectors.pagination and profile.selectors.collection_links and profile.selectors.look_links
    assert profile.user_agent == "AtelierScraper/0.1 (+mailto:data-team@your-company.example)"
    # Same-site rule: start host plus the explicitly allowed image CDN, nothing else.
    assert profile.is_allowed_host("https://runway-archive.example.com/designers/x/")
    assert profile.is_allowed_host("https://images.runway-archive.example.com/a.jpg")
    assert not profile.is_allowed_host("https://tracker.example.net/pixel.gif")
    assert not profile.is_allowed_host("ftp://runway-archive.example.com/a.jpg")


def test_minimal_profile_takes_polite_defaults(tmp_path):
    profile = load_profile(write(tmp_path, MINIMAL))
    assert profile.name == "site"  # the file name when no name is given
    # Unset, a profile waits 2 s between requests to one host and tries a URL 4 times (the example sets 3 s).
    assert (profile.crawl.delay, profile.crawl.max_attempts) == (2.0, 4)
    assert (profile.crawl.connect_timeout, profile.crawl.read_timeout) == (10.0, 30.0)
    assert profile.images.formats == ("JPEG", "PNG", "WEBP")


@pytest.mark.parametrize("text, expected", [
    (MINIMAL.replace('contact = "mailto:team@example.com"\n', ""), "missing key '[site] contact'"),
    (MINIMAL.replace('image = "img.look"', 'imgae = "img.look"'), "unknown key '[selectors] imgae'"),
    (MINIMAL.replace('image = "img.look"', 'image = "img[.look"'), "[selectors] image is not a valid CSS selector"),
    (MINIMAL.replace("archive.example", "archive.example\", \"/relative"), "not an http(s) URL"),
    (MINIMAL + "[crawl]\ntimeout = [10]\n", "[crawl] timeout must be [connect, read]"),
    (MINIMAL + "[crawl]\ndelay = -1\n", "[crawl] delay must be a number >= 0"),
    (MINIMAL + "[crawl]\nmax_attempts = 2.5\n", "[crawl] max_attempts must be a whole number"),
    (MINIMAL + "[fields]\nyear = { selector = \".s\", pattern = \"(\" }\n", "[fields.year] pattern is not a valid"),
    (MINIMAL + "[fields]\nyear = 4\n", "[fields] year must be a selector string"),
    (MINIMAL + "[images]\nmax_pixels = 0\n", "[images] max_pixels must be a whole number >= 1"),
    (MINIMAL + 'image_attr = "scr"\n', "[selectors] image_attr 'scr' is not an attribute"),
    (MINIMAL + "[images]\nplaceholder_pages = 2\n", "[images] placeholder_pages must be 0 (off) or at least 3"),
    (MINIMAL + 'image_attr = "data src"\n', "[selectors] image_attr 'data src' is not an attribute"),
    ("[site\n", "is not valid TOML"),
])
def test_profile_errors_name_the_key_and_the_file(tmp_path, text, expected):
    path = write(tmp_path, text)
    with pytest.raises(AtelierError) as info:
        load_profile(path)
    message = str(info.value)
    assert expected in message
    assert str(path) in message and "Fix" in message


def test_missing_profile_points_at_the_template(tmp_path):
    with pytest.raises(AtelierError, match="example-runway.toml"):
        load_profile(tmp_path / "nope.toml")


@pytest.mark.parametrize("attr", ["src", "srcset", "href", "data-src", "data-lazy-srcset", "DATA-Original"])
def test_image_attr_accepts_standard_and_data_attributes(tmp_path, attr):
    profile = load_profile(write(tmp_path, MINIMAL + f'image_attr = "{attr}"\n'))
    assert profile.selectors.image_attr == attr.lower()


def test_placeholder_contacts_are_recognised(tmp_path):
    from dataclasses import replace

    from scrape.profile import placeholder_contact_problem

    profile = load_profile(EXAMPLE)
    assert "[site] contact 'mailto:data-team@your-company.example' is a placeholder" in (
        placeholder_contact_problem(profile) or "")
    for contact in ("team@example.com", "https://www.example.org/contact", "ops@archive.example"):
        assert placeholder_contact_problem(replace(profile, contact=contact)) is not None, contact
    for contact in ("mailto:data@maison-aurore.fr", "https://atelier.studio/contact", "tests@atelier.invalid"):
        assert placeholder_contact_problem(replace(profile, contact=contact)) is None, contact
