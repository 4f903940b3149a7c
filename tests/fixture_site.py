"""A generated runway archive served over real HTTP on 127.0.0.1, for the scraper and preparation tests.

Layout (the same shape as ``scrape/profiles/example-runway.toml`` expects)::

    /runway/ -> ?page=2 -> ?page=3                      designer index with pagination
    /designers/<house>/                                 designer page: links to collections
    /designers/<house>/<season>/ (-> ?page=2)           collection: city, links to look pages
    /designers/<house>/<season>/look-<n>/               look page: one <img> and metadata fields
    /media/<house>/<season>/<n>.jpg                     look images

and every trap the scraper must survive: robots.txt disallowing /private/, an off-site link, a 301 to a
renamed designer, a 404, a 503 that succeeds on retry, a response slower than the read timeout, a truncated JPEG,
exact and near duplicates, an HTML page served as image/jpeg, a decompression bomb, a file over the size limit,
and (for preparation) a tiny image and a panorama.

The server answers conditional requests (an ETag from each body, Last-Modified where a route sets one) with 304,
and can be taken down (every request answered 503) at once or after a number of requests, then brought back.
``build_lazy_archive`` and ``build_deep_archive`` make smaller sites for lazy-loaded images and long pagination.
"""
from __future__ import annotations

import email.utils
import hashlib
import io
import random
import struct
import threading
import time
import zlib
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from PIL import Image, ImageDraw

SLOW_SECONDS = 1.5
MAX_IMAGE_BYTES = 200_000
MAX_PIXELS = 10_000_000

HOUSES = {"maison-aurore": "Maison Aurore", "studio-bleu": "Studio Bleu", "atelier-nord": "Atelier Nord",
          "casa-verde": "Casa Verde"}
SEASONS = {"spring-2021": ("Spring 2021", "Paris", "Ready-to-Wear"),
           "fall-2021": ("Fall 2021", "Milan", "Couture")}
LOOKS_PER_COLLECTION = 3
EXTRA_LOOKS_PAGE_2 = 2  # maison-aurore/spring-2021 has a second page with two more looks


@dataclass
class Route:
    body: bytes
    content_type: str = "text/html; charset=utf-8"
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    behaviour: str = "normal"  # "normal", "fail_once" (503 then 200) or "slow" (sleeps past the read timeout)
    retry_after: str | None = None  # Retry-After header of the 503 that "fail_once" sends first
    send_length: bool = True  # False: no Content-Length, the body simply runs until the connection closes
    last_modified: str | None = None  # Last-Modified header (an HTTP date); every 200 also gets an ETag of its body


@dataclass
class Archive:
    routes: dict[str, Route]
    # Which look URL paths hold which trap, so tests can name what they expect.
    traps: dict[str, str]


# ---------------------------------------------------------------------------------------------------- images

def draw_look(seed: int, size: tuple[int, int] = (160, 240)) -> Image.Image:
    """A simple runway figure on a light backdrop; the seed varies pose, silhouette and print."""
    rng = random.Random(seed)
    width, height = size
    backdrop = (236 + rng.randint(-4, 4), 234 + rng.randint(-4, 4), 230 + rng.randint(-4, 4))
    image = Image.new("RGB", size, backdrop)
    draw = ImageDraw.Draw(image)
    cx = width // 2 + rng.randint(-width // 8, width // 8)
    skin = (rng.randint(120, 230), rng.randint(90, 190), rng.randint(70, 160))
    garment = tuple(rng.randint(10, 200) for _ in range(3))
    head_r = height // 18
    top = height // 10
    draw.ellipse([cx - head_r, top, cx + head_r, top + 2 * head_r], fill=skin)
    shoulders = top + 2 * head_r + 4
    hem = int(height * rng.uniform(0.55, 0.8))
    half_top, half_hem = rng.randint(12, 24), rng.randint(14, 60)
    draw.polygon([(cx - half_top, shoulders), (cx + half_top, shoulders), (cx + half_hem, hem), (cx - half_hem, hem)],
                 fill=garment)
    # A print: stripes or dots in a contrasting colour, placed at random, so every look hashes differently.
    accent = tuple(255 - c for c in garment)
    for _ in range(rng.randint(3, 7)):
        y = rng.randint(shoulders, hem - 4)
        if rng.random() < 0.5:
            draw.rectangle([cx - half_hem, y, cx + half_hem, y + rng.randint(2, 8)], fill=accent)
        else:
            x = rng.randint(cx - half_top, cx + half_top)
            draw.ellipse([x - 5, y - 5, x + 5, y + 5], fill=accent)
    for side in (-1, 1):
        arm_angle = rng.uniform(0.1, 0.9)
        draw.line([(cx + side * half_top, shoulders + 2),
                   (cx + side * (half_top + int(50 * arm_angle)), shoulders + int(70 * (1 - arm_angle / 2)))],
                  fill=skin, width=6)
        draw.line([(cx + side * 8, hem), (cx + side * rng.randint(8, 30), height - 12)], fill=skin, width=8)
    return image


def jpeg_bytes(image: Image.Image, quality: int = 92) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def decompression_bomb(width: int = 20_000, height: int = 20_000) -> bytes:
    """A valid 1-bit PNG that declares width x height pixels but compresses to a few tens of kilobytes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = b"\x00" + b"\x00" * ((width + 7) // 8)  # filter byte + packed bits
    compressor = zlib.compressobj(9)
    payload = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1 bit, greyscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", payload) + chunk(b"IEND", b"")


def noise_png(side: int, seed: int) -> bytes:
    """Incompressible pixels, for a file bigger than the scraper's size limit."""
    rng = random.Random(seed)
    return png_bytes(Image.frombytes("RGB", (side, side), rng.randbytes(side * side * 3)))


# ---------------------------------------------------------------------------------------------------- pages

def _page(title: str, body: str) -> Route:
    html = f"<!DOCTYPE html><html><head><title>{title}</title></head><body>{body}</body></html>"
    return Route(html.encode("utf-8"))


def build_archive() -> Archive:
    routes: dict[str, Route] = {}
    traps: dict[str, str] = {}
    routes["/robots.txt"] = Route(b"User-agent: *\nDisallow: /private/\n", content_type="text/plain")

    index_pages = [
        ["/designers/maison-aurore/", "/private/hidden-house/", "http://example.invalid/designers/elsewhere/",
         "/designers/gone/"],
        ["/designers/studio-bleu/", "/designer/atelier-nord/"],  # the second one is an old URL that redirects
        ["/designers/casa-verde/"],
    ]
    for number, links in enumerate(index_pages, start=1):
        path = "/runway/" if number == 1 else f"/runway/?page={number}"
        items = "".join(f'<li><a class="designer" href="{href}">{href.rstrip("/").rsplit("/", 1)[-1]}</a></li>'
                        for href in links)
        nav = f'<a class="next" href="/runway/?page={number + 1}">Next</a>' if number < len(index_pages) else ""
        routes[path] = _page(f"Designers, page {number}", f'<ul class="designers">{items}</ul><nav>{nav}</nav>')
    routes["/designer/atelier-nord/"] = Route(b"", status=301, headers={"Location": "/designers/atelier-nord/"})
    routes["/private/hidden-house/"] = _page("Private", '<a class="collection" href="/private/hidden-house/x/">x</a>')

    seed = 0
    originals: dict[str, Image.Image] = {}
    for house, house_name in HOUSES.items():
        collections = "".join(f'<li><a class="collection" href="/designers/{house}/{season}/">{name}</a></li>'
                              for season, (name, _, _) in SEASONS.items())
        routes[f"/designers/{house}/"] = _page(house_name, f'<h1>{house_name}</h1><ul>{collections}</ul>')
        for season, (season_name, city, category) in SEASONS.items():
            base = f"/designers/{house}/{season}/"
            numbers = list(range(1, LOOKS_PER_COLLECTION + 1))
            pages = [numbers]
            if (house, season) == ("maison-aurore", "spring-2021"):
                pages.append(list(range(LOOKS_PER_COLLECTION + 1, LOOKS_PER_COLLECTION + 1 + EXTRA_LOOKS_PAGE_2)))
            for page_number, page_looks in enumerate(pages, start=1):
                looks = "".join(f'<li><a class="look" href="look-{n}/">Look {n}</a></li>' for n in page_looks)
                nav = f'<a class="next" href="{base}?page=2">More looks</a>' if page_number < len(pages) else ""
                path = base if page_number == 1 else f"{base}?page={page_number}"
                routes[path] = _page(f"{house_name} {season_name}",
                                     f'<h2>{house_name} {season_name}</h2><p class="city">{city}</p>'
                                     f'<ul class="looks">{looks}</ul>{nav}')
            for n in numbers + [x for page in pages[1:] for x in page]:
                look_path = f"{base}look-{n}/"
                image_path = f"/media/{house}/{season}/{n}.jpg"
                seed += 1
                originals[look_path] = draw_look(seed)
                routes[look_path] = _page(
                    f"{house_name} {season_name} look {n}",
                    '<div class="look-meta">'
                    f'<span class="designer">{house_name}</span><span class="season">{season_name}</span>'
                    f'<span class="category">{category}</span><span class="look-number">Look {n}</span></div>'
                    f'<img class="look-image" src="{image_path}" alt="look {n}">'
                    '<a href="https://example.invalid/share">share</a>')
                routes[image_path] = Route(jpeg_bytes(originals[look_path]), content_type="image/jpeg")

    def media(look_path: str) -> str:
        house, season, look = look_path.strip("/").split("/")[1:4]
        return f"/media/{house}/{season}/{look.removeprefix('look-')}.jpg"

    def trap(look_path: str, name: str, route: Route) -> None:
        traps[look_path] = name
        routes[media(look_path)] = route

    first = "/designers/maison-aurore/spring-2021/look-1/"
    second = "/designers/maison-aurore/spring-2021/look-2/"
    trap("/designers/casa-verde/fall-2021/look-3/", "exact duplicate", Route(routes[media(first)].body, "image/jpeg"))
    # Same drawing, brighter by one level and re-encoded at another quality: different bytes, same picture.
    brighter = originals[second].point(lambda v: min(255, v + 1))
    trap("/designers/studio-bleu/spring-2021/look-2/", "near duplicate", Route(jpeg_bytes(brighter, 80), "image/jpeg"))
    trap("/designers/atelier-nord/fall-2021/look-1/", "broken image",
         Route(routes[media("/designers/atelier-nord/fall-2021/look-1/")].body[:1500], "image/jpeg"))
    trap("/designers/atelier-nord/fall-2021/look-2/", "not an image",
         Route(b"<!DOCTYPE html><html><body>Image moved</body></html>", "image/jpeg"))
    trap("/designers/atelier-nord/fall-2021/look-3/", "decompression bomb", Route(decompression_bomb(), "image/png"))
    trap("/designers/maison-aurore/fall-2021/look-2/", "503 once",
         Route(routes[media("/designers/maison-aurore/fall-2021/look-2/")].body, "image/jpeg", behaviour="fail_once"))
    trap("/designers/casa-verde/spring-2021/look-1/", "slow",
         Route(routes[media("/designers/casa-verde/spring-2021/look-1/")].body, "image/jpeg", behaviour="slow"))
    trap("/designers/casa-verde/spring-2021/look-2/", "too large",
         Route(noise_png(300, seed=7), "image/png", send_length=False))
    # Valid downloads that preparation must drop.
    trap("/designers/studio-bleu/fall-2021/look-3/", "tiny", Route(jpeg_bytes(draw_look(901, (48, 64))), "image/jpeg"))
    trap("/designers/casa-verde/fall-2021/look-1/", "panorama",
         Route(jpeg_bytes(draw_look(902, (800, 200))), "image/jpeg"))
    return Archive(routes=routes, traps=traps)


def gif_bytes(colour: int = 200) -> bytes:
    buffer = io.BytesIO()
    Image.new("P", (1, 1), colour).save(buffer, "GIF")
    return buffer.getvalue()


def _look_page(n: int, img: str) -> Route:
    return _page(f"Look {n}", f'<span class="season">Spring 2024</span><span class="look-number">Look {n}</span>{img}')


def build_lazy_archive(looks: int = 9, real_attr: str | None = None, placeholder: bytes | None = None) -> Archive:
    """One show whose look images are lazy-loaded: ``src`` is a shared stand-in, the real file sits in a data-*
    attribute (data-src, data-srcset, data-original in turn, or ``real_attr`` for all). Three more look pages have
    only the stand-in (their photo is not published yet), so the stand-in is shown on at least three pages."""
    blank = "/static/blank.gif"
    routes = {"/robots.txt": Route(b"User-agent: *\nAllow: /\n", "text/plain"),
              blank: Route(placeholder or gif_bytes(), "image/jpeg" if placeholder else "image/gif")}
    items = []
    for n in range(1, looks + 4):
        items.append(f'<li><a class="look" href="/show/look-{n}/">{n}</a></li>')
        real = f"/media/{n}.jpg"
        attr = real_attr or ("data-src", "data-srcset", "data-original")[n % 3]
        value = f"/media/{n}-small.jpg 480w, {real} 1080w" if attr.endswith("srcset") else real
        if n <= looks:
            img = f'<img class="look-image" src="{blank}" {attr}="{value}" alt="look {n}">'
            routes[real] = Route(jpeg_bytes(draw_look(500 + n)), "image/jpeg")
        else:
            img = f'<img class="look-image" src="{blank}" alt="coming soon">'
        routes[f"/show/look-{n}/"] = _look_page(n, img)
    routes["/runway/"] = _page("Show", '<a class="collection" href="/show/">Show</a>')
    routes["/show/"] = _page("Show", f'<ul>{"".join(items)}</ul>')
    return Archive(routes=routes, traps={})


def build_deep_archive(index_pages: int = 12, last_modified: str | None = None) -> Archive:
    """An index paginated over ``index_pages`` pages, each linking one collection of two looks: every look is
    three links from the start however far down the index it is."""
    routes = {"/robots.txt": Route(b"", "text/plain")}
    for page in range(1, index_pages + 1):
        add_index_page(routes, page, index_pages, last_modified)
        base = f"/c{page}/"
        routes[base] = _page(f"Collection {page}", "".join(
            f'<a class="look" href="{base}look-{n}/">{n}</a>' for n in (1, 2)))
        for n in (1, 2):
            routes[f"{base}look-{n}/"] = _look_page(n, f'<img class="look-image" src="/media/{page}-{n}.jpg">')
            routes[f"/media/{page}-{n}.jpg"] = Route(jpeg_bytes(draw_look(1000 + 10 * page + n)), "image/jpeg")
    return Archive(routes=routes, traps={})


def add_index_page(routes: dict[str, Route], page: int, pages: int, last_modified: str | None = None) -> None:
    """(Re)write index page ``page`` of ``pages`` of a deep archive; a next link unless it is the last."""
    nav = f'<a class="next" href="/runway/?page={page + 1}">next</a>' if page < pages else ""
    path = "/runway/" if page == 1 else f"/runway/?page={page}"
    routes[path] = _page(f"Index {page}", f'<a class="collection" href="/c{page}/">Collection {page}</a>{nav}')
    routes[path].last_modified = last_modified


# ---------------------------------------------------------------------------------------------------- server

@dataclass(frozen=True)
class Request:
    path: str
    user_agent: str
    at: float
    conditional: bool = False  # sent If-None-Match or If-Modified-Since


class FixtureServer:
    """Serves an Archive on 127.0.0.1 (port chosen by the OS) and records every request it receives."""

    def __init__(self, archive: Archive, slow_seconds: float = SLOW_SECONDS) -> None:
        self.archive = archive
        self.slow_seconds = slow_seconds
        self.down = False  # an outage: every request is answered 503
        self.down_after: int | None = None  # go down by itself once this many requests were served
        self.not_modified: list[str] = []  # paths answered 304
        self.requests: list[Request] = []
        self._failed_once: set[str] = set()
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.fixture = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FixtureServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def reset(self) -> None:
        """Forget the request log and the 'fail once' memory, as if the server had just started."""
        with self._lock:
            self.requests.clear()
            self.not_modified.clear()
            self._failed_once.clear()

    def paths(self) -> list[str]:
        with self._lock:
            return [r.path for r in self.requests]

    def _record(self, path: str, user_agent: str, conditional: bool) -> tuple[bool, bool]:
        """Log the request; returns (a fail-once route should fail now, the server is down)."""
        with self._lock:
            if self.down_after is not None and len(self.requests) >= self.down_after:
                self.down, self.down_after = True, None
            self.requests.append(Request(path, user_agent, time.monotonic(), conditional))
            first = path not in self._failed_once
            self._failed_once.add(path)
            return first, self.down


class _Handler(BaseHTTPRequestHandler):
    server_version = "FixtureRunway/1.0"

    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        fixture: FixtureServer = self.server.fixture  # type: ignore[attr-defined]
        conditional = bool(self.headers.get("If-None-Match") or self.headers.get("If-Modified-Since"))
        first_time, down = fixture._record(self.path, self.headers.get("User-Agent", ""), conditional)
        route = fixture.archive.routes.get(self.path)
        if down:
            self._send(Route(b"down for maintenance", "text/plain", status=503))
        elif route is not None and route.status == 200 and self._unchanged(route):
            with fixture._lock:
                fixture.not_modified.append(self.path)
            self._send(Route(b"", route.content_type, status=304, headers=_validators(route), send_length=False))
        elif route is None:
            self._send(Route(b"<h1>Not found</h1>", status=404))
        elif route.behaviour == "fail_once" and first_time:
            headers = {"Retry-After": route.retry_after} if route.retry_after else {}
            self._send(Route(b"busy", "text/plain", status=503, headers=headers))
        else:
            if route.behaviour == "slow":
                time.sleep(fixture.slow_seconds)
            self._send(route)

    def _unchanged(self, route: Route) -> bool:
        """RFC 9110: If-None-Match decides when present; otherwise If-Modified-Since against Last-Modified."""
        if_none_match = self.headers.get("If-None-Match")
        if if_none_match:
            return _validators(route)["ETag"] in [tag.strip() for tag in if_none_match.split(",")]
        since = self.headers.get("If-Modified-Since")
        if not since or route.last_modified is None:
            return False
        return email.utils.parsedate_to_datetime(route.last_modified) <= email.utils.parsedate_to_datetime(since)

    def _send(self, route: Route) -> None:
        try:
            self.send_response(route.status)
            self.send_header("Content-Type", route.content_type)
            if route.send_length:
                self.send_header("Content-Length", str(len(route.body)))
            headers = {**_validators(route), **route.headers} if route.status == 200 else route.headers
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(route.body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (the slow route): nothing to do

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (signature from http.server)
        pass


def _validators(route: Route) -> dict[str, str]:
    headers = {"ETag": '"' + hashlib.sha256(route.body).hexdigest()[:16] + '"'}
    if route.last_modified:
        headers["Last-Modified"] = route.last_modified
    return headers


def write_profile(path: Path, base_url: str, *, image_attr: str = "src", max_pixels: int = MAX_PIXELS,
                  formats: tuple[str, ...] = ("JPEG", "PNG", "WEBP"), placeholder_pages: int = 3,
                  **crawl: object) -> Path:
    """A site profile for the fixture archive; keyword arguments override [crawl] settings."""
    settings: dict[str, object] = {"delay": 0, "timeout": [2, 0.5], "max_attempts": 3, "backoff": 0.01,
                                   "max_wait": 2}
    settings.update(crawl)
    crawl_lines = "\n".join(f"{key} = {_toml_value(value)}" for key, value in settings.items())
    path.write_text(f"""\
name = "fixture-runway"

[site]
start_urls = ["{base_url}/runway/"]
contact = "tests@atelier.invalid"

[selectors]
pagination = "a.next"
listing_links = "a.designer"
collection_links = "a.collection"
look_links = "a.look"
image = "img.look-image"
image_attr = "{image_attr}"

[fields]
designer = "span.designer"
season = "span.season"
year = {{ selector = "span.season", pattern = "(\\\\d{{4}})" }}
city = ".city"
category = "span.category"
look = {{ selector = ".look-number", pattern = "(\\\\d+)" }}

[crawl]
{crawl_lines}

[images]
max_bytes = {MAX_IMAGE_BYTES}
max_pixels = {max_pixels}
formats = {_toml_value(list(formats))}
placeholder_pages = {placeholder_pages}
""", encoding="utf-8")
    return path


def _toml_value(value: object) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, str):
        return f'"{value}"'
    return str(value)
