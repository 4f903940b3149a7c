"""Site profiles: a TOML file that tells the scraper where to start and how to read one runway archive.

A profile has four tables (see ``scrape/profiles/example-runway.toml`` for a commented example):

- ``[site]``       start URLs, a contact for the User-Agent, extra hosts (e.g. an image CDN)
- ``[selectors]``  CSS selectors for pagination, collection links, look links and the image
- ``[fields]``     metadata fields, each a CSS selector (optionally an attribute and a regex)
- ``[crawl]`` / ``[images]``  politeness, retries and limits

Every key is validated here, so a typo fails before the first request with a message naming the key and the file.
"""
from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

import soupsieve

from core.errors import AtelierError

USER_AGENT_NAME = "AtelierScraper"
USER_AGENT_VERSION = "0.1"
# Attributes an image address can be read from: the standard ones, or any data-* attribute (lazy loaders invent
# their own names: data-src, data-lazy-src, data-original ...). Anything else is most likely a typo.
IMAGE_ATTRS = ("src", "srcset", "href")
# Domains reserved for documentation (RFC 2606 / 6761): a contact there reaches nobody.
EXAMPLE_DOMAINS = ("example", "example.com", "example.net", "example.org")


@dataclass(frozen=True)
class FieldRule:
    """How to read one metadata field from a page: text (or an attribute) of the first match, then a regex."""

    name: str
    selector: str
    attr: str | None = None
    pattern: str | None = None


@dataclass(frozen=True)
class Selectors:
    image: str
    image_attr: str = "src"
    pagination: str | None = None
    listing_links: str | None = None
    collection_links: str | None = None
    look_links: str | None = None


@dataclass(frozen=True)
class CrawlSettings:
    delay: float = 2.0
    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    max_attempts: int = 4
    backoff: float = 1.0
    max_wait: float = 120.0
    max_depth: int = 10
    max_pages: int | None = None
    max_images: int | None = None
    max_page_bytes: int = 5_000_000
    max_consecutive_failures: int = 20


@dataclass(frozen=True)
class ImageSettings:
    max_bytes: int = 25_000_000
    max_pixels: int = 80_000_000
    formats: tuple[str, ...] = ("JPEG", "PNG", "WEBP")
    near_duplicate_distance: int = 6
    # An image shown on this many pages is a placeholder (lazy-loading stand-in), not kept; 0 turns this off.
    placeholder_pages: int = 3


@dataclass(frozen=True)
class SiteProfile:
    name: str
    start_urls: tuple[str, ...]
    contact: str
    selectors: Selectors
    fields: tuple[FieldRule, ...] = ()
    allowed_hosts: frozenset[str] = frozenset()
    crawl: CrawlSettings = field(default_factory=CrawlSettings)
    images: ImageSettings = field(default_factory=ImageSettings)
    source: Path | None = None

    @property
    def user_agent(self) -> str:
        return f"{USER_AGENT_NAME}/{USER_AGENT_VERSION} (+{self.contact})"

    def is_allowed_host(self, url: str) -> bool:
        """Same-site rule: a URL may be fetched only if its host (with port) is a start host or listed as allowed."""
        parts = urlsplit(url)
        return parts.scheme in ("http", "https") and parts.netloc.lower() in self.allowed_hosts


# ---------------------------------------------------------------------------------------------------- parsing

_KNOWN_TABLES = {"name", "site", "selectors", "fields", "crawl", "images"}


class _Reader:
    """Reads typed values out of one TOML table, turning every problem into an AtelierError that names key and file."""

    def __init__(self, path: Path, table_name: str, table: Any) -> None:
        self.path = path
        self.table_name = table_name
        if table is None:
            table = {}
        if not isinstance(table, dict):
            self.fail(f"[{table_name}] must be a table", "write it as a [" + table_name + "] section")
        self.table: dict[str, Any] = table

    def where(self, key: str) -> str:
        return f"[{self.table_name}] {key}" if self.table_name else key

    def fail(self, problem: str, fix: str) -> NoReturn:
        raise AtelierError(f"Site profile {self.path}: {problem}. Fix: {fix}.")

    def reject_unknown(self, known: set[str]) -> None:
        for key in self.table:
            if key not in known:
                self.fail(f"unknown key {self.where(key)!r}",
                          f"use one of {', '.join(sorted(known))} (check the spelling)")

    def text(self, key: str, default: str | None = None, required: bool = False) -> str | None:
        value = self.table.get(key, default)
        if value is None:
            if required:
                self.fail(f"missing key {self.where(key)!r}", f"add {key} = \"...\" under [{self.table_name}]")
            return None
        if not isinstance(value, str) or not value.strip():
            self.fail(f"{self.where(key)} must be a non-empty string, got {value!r}", "put the value in quotes")
        return value.strip()

    def selector(self, key: str, required: bool = False) -> str | None:
        value = self.text(key, required=required)
        if value is not None:
            try:
                soupsieve.compile(value)
            except Exception as exc:  # soupsieve raises its own SelectorSyntaxError; any failure means a bad selector
                self.fail(f"{self.where(key)} is not a valid CSS selector ({value!r}: {exc})", "correct the selector")
        return value

    def number(self, key: str, default: float | None, minimum: float, integer: bool = False) -> float | int | None:
        value = self.table.get(key, default)
        if value is None:
            return None
        ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
        if isinstance(value, bool) or not ok_type or value < minimum:
            kind = "a whole number" if integer else "a number"
            self.fail(f"{self.where(key)} must be {kind} >= {minimum}, got {value!r}",
                      f"set {key} to {kind} >= {minimum}")
        return int(value) if integer else float(value)

    def text_list(self, key: str, required: bool = False) -> list[str]:
        value = self.table.get(key)
        if value is None:
            if required:
                self.fail(f"missing key {self.where(key)!r}", f"add {key} = [\"...\"] under [{self.table_name}]")
            return []
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            self.fail(f"{self.where(key)} must be a list of strings, got {value!r}",
                      f"write {key} = [\"...\", \"...\"]")
        if required and not value:
            self.fail(f"{self.where(key)} is empty", f"list at least one entry in {key}")
        return [v.strip() for v in value]


def load_profile(path: str | Path) -> SiteProfile:
    """Read and validate a site profile; raise AtelierError naming the key and the file on any problem."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise AtelierError(f"Site profile {path} does not exist. Fix: pass --profile with the path of a .toml file "
                           "(scrape/profiles/example-runway.toml is a commented template).")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise AtelierError(f"Site profile {path} is not valid TOML ({exc}). "
                           "Fix: correct the syntax at that line.") from exc
    return parse_profile(data, path)


def parse_profile(data: dict[str, Any], path: Path) -> SiteProfile:
    top = _Reader(path, "", data)
    top.reject_unknown(_KNOWN_TABLES)
    name = top.text("name", default=path.stem)
    assert name is not None

    site = _Reader(path, "site", data.get("site"))
    site.reject_unknown({"start_urls", "contact", "allowed_hosts"})
    start_urls = site.text_list("start_urls", required=True)
    for url in start_urls:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            site.fail(f"[site] start_urls has {url!r}, which is not an http(s) URL",
                      "write full URLs like https://host/path")
    contact = site.text("contact", required=True)
    assert contact is not None
    # Same-site rule: the hosts of the start URLs, plus any the profile adds explicitly (e.g. an image CDN).
    hosts = {urlsplit(url).netloc.lower() for url in start_urls}
    hosts.update(h.lower() for h in site.text_list("allowed_hosts"))

    sel = _Reader(path, "selectors", data.get("selectors"))
    sel.reject_unknown({"image", "image_attr", "pagination", "listing_links", "collection_links", "look_links"})
    image_selector = sel.selector("image", required=True)
    assert image_selector is not None
    selectors = Selectors(
        image=image_selector,
        image_attr=_image_attr(sel),
        pagination=sel.selector("pagination"),
        listing_links=sel.selector("listing_links"),
        collection_links=sel.selector("collection_links"),
        look_links=sel.selector("look_links"),
    )

    fields = _parse_fields(path, data.get("fields"))

    crawl_reader = _Reader(path, "crawl", data.get("crawl"))
    crawl_reader.reject_unknown({"delay", "timeout", "max_attempts", "backoff", "max_wait", "max_depth", "max_pages",
                                 "max_images", "max_page_bytes", "max_consecutive_failures"})
    connect_timeout, read_timeout = _parse_timeout(crawl_reader)
    defaults = CrawlSettings()
    crawl = CrawlSettings(
        delay=crawl_reader.number("delay", defaults.delay, 0),
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        max_attempts=crawl_reader.number("max_attempts", defaults.max_attempts, 1, integer=True),
        backoff=crawl_reader.number("backoff", defaults.backoff, 0),
        max_wait=crawl_reader.number("max_wait", defaults.max_wait, 0),
        max_depth=crawl_reader.number("max_depth", defaults.max_depth, 0, integer=True),
        max_pages=crawl_reader.number("max_pages", None, 1, integer=True),
        max_images=crawl_reader.number("max_images", None, 1, integer=True),
        max_page_bytes=crawl_reader.number("max_page_bytes", defaults.max_page_bytes, 1024, integer=True),
        max_consecutive_failures=crawl_reader.number("max_consecutive_failures", defaults.max_consecutive_failures,
                                                     1, integer=True),
    )

    img_reader = _Reader(path, "images", data.get("images"))
    img_reader.reject_unknown({"max_bytes", "max_pixels", "formats", "near_duplicate_distance", "placeholder_pages"})
    img_defaults = ImageSettings()
    formats = tuple(f.upper() for f in img_reader.text_list("formats")) or img_defaults.formats
    images = ImageSettings(
        max_bytes=img_reader.number("max_bytes", img_defaults.max_bytes, 1024, integer=True),
        max_pixels=img_reader.number("max_pixels", img_defaults.max_pixels, 1, integer=True),
        formats=formats,
        near_duplicate_distance=img_reader.number("near_duplicate_distance", img_defaults.near_duplicate_distance,
                                                  0, integer=True),
        placeholder_pages=_placeholder_pages(img_reader, img_defaults.placeholder_pages),
    )
    return SiteProfile(name=name, start_urls=tuple(start_urls), contact=contact, selectors=selectors,
                       fields=fields, allowed_hosts=frozenset(hosts), crawl=crawl, images=images, source=path)


def _placeholder_pages(reader: _Reader, default: int) -> int:
    value = reader.number("placeholder_pages", default, 0, integer=True)
    if value in (1, 2):  # 1 would call every image a placeholder; 2 every look shown twice (an exact duplicate)
        reader.fail(f"[images] placeholder_pages must be 0 (off) or at least 3, got {value}",
                    "write placeholder_pages = 3 (the default), or 0 to keep images shown on many pages")
    return int(value)


def _image_attr(reader: _Reader) -> str:
    value = (reader.text("image_attr", default="src") or "src").lower()
    if value not in IMAGE_ATTRS and not re.fullmatch(r"data-[a-z0-9][a-z0-9_.-]*", value):
        reader.fail(f"[selectors] image_attr {value!r} is not an attribute an image address is read from",
                    f"use one of {', '.join(IMAGE_ATTRS)} or a data-* attribute such as data-src (the lazy-loading "
                    "attributes data-src, data-srcset, data-lazy-src and data-original are tried anyway)")
    return value


def placeholder_contact_problem(profile: SiteProfile) -> str | None:
    """Why the profile's contact cannot reach anyone (the template's address, a documentation domain), or None.

    Checked before crawling rather than when loading, so a template can still be loaded and validated."""
    contact = profile.contact.strip()
    domain = (urlsplit(contact).hostname or "") if "://" in contact else contact.rsplit("@", 1)[-1]
    domain = domain.split("/", 1)[0].split("?", 1)[0].strip("<> ").lower().rstrip(".")
    placeholder = "your-company" in domain or any(domain == d or domain.endswith("." + d) for d in EXAMPLE_DOMAINS)
    if not placeholder:
        return None
    return (f"Site profile {profile.source or profile.name}: [site] contact {profile.contact!r} is a placeholder "
            "address (it reaches nobody, and it goes into the User-Agent the site sees). Fix: put an address where "
            "the site's operators can reach you, e.g. contact = \"mailto:you@yourdomain\".")


def _parse_timeout(reader: _Reader) -> tuple[float, float]:
    value = reader.table.get("timeout", [10, 30])
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = [value, value]
    if (not isinstance(value, list) or len(value) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in value)):
        reader.fail(f"[crawl] timeout must be [connect, read] seconds, both > 0, got {value!r}",
                    "write timeout = [10, 30]")
    return float(value[0]), float(value[1])


def _parse_fields(path: Path, table: Any) -> tuple[FieldRule, ...]:
    reader = _Reader(path, "fields", table)
    rules = []
    for name, spec in reader.table.items():
        if isinstance(spec, str):
            spec = {"selector": spec}
        if not isinstance(spec, dict):
            reader.fail(f"[fields] {name} must be a selector string or a table {{selector, attr, pattern}}, "
                        f"got {spec!r}", f"write {name} = \".css-selector\"")
        sub = _Reader(path, f"fields.{name}", spec)
        sub.reject_unknown({"selector", "attr", "pattern"})
        selector = sub.selector("selector", required=True)
        pattern = sub.text("pattern")
        if pattern is not None:
            try:
                re.compile(pattern)
            except re.error as exc:
                sub.fail(f"[fields.{name}] pattern is not a valid regular expression ({exc})", "correct the pattern")
        assert selector is not None
        rules.append(FieldRule(name=name, selector=selector, attr=sub.text("attr"), pattern=pattern))
    return tuple(rules)
