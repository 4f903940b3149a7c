"""Synthetic runway dataset: one full-length figure per image, dressed from explicit, recorded factors.

It is the training set of Atelier's built-in demo model and the ground truth for direction discovery: every image
comes from ``sample_factors(seed)`` and ``render_runway(factors)``, both deterministic, so a seed names an image and
its factor values exactly. Images are drawn with PIL at ``supersample`` times the size and downsampled, which
anti-aliases the edges; torch is only needed for ``SyntheticRunwayStream`` and is imported when that is first used.

Geometry is written in head units: ``x`` from the figure's centre line, ``y`` down from the top of the head, with a
figure 7.5 heads tall (a fashion-sketch proportion, slightly stocky so garments stay readable at 64 px).
"""
from __future__ import annotations

import colorsys
import functools
import io
import json
import math
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from PIL import Image, ImageChops, ImageDraw

from core.errors import AtelierError
from scrape.dataset import DatasetWriter

Color = tuple[int, int, int]
Point = tuple[float, float]

FIGURE_HEADS = 7.5  # top of head to sole, in head units
LABEL_CHOICES = ("garment",)  # factors that can serve as the class label of conditional training


@dataclass(frozen=True)
class RunwayFactors:
    """Everything that decides one synthetic runway image. Continuous factors are in 0..1 unless noted."""

    garment: str  # one of GARMENTS
    sleeve: float  # 0 sleeveless .. 1 long (to the wrist); an outer layer's sleeves follow it too
    length: float  # hem of the dress, skirt, trousers or coat: 0 mid-thigh .. 1 floor
    hue: float  # main garment colour, HSV
    saturation: float
    value: float
    pattern: str  # one of PATTERNS
    layer: str  # one of LAYERS: outer garment worn open over the look
    # Nuisance factors: they vary the picture but not the clothes.
    height: float  # figure height within the frame
    x_offset: float  # -1..1, horizontal position (a small shift)
    skin: float  # light .. deep
    hair: float  # platinum .. black
    background: float  # cool grey .. warm off-white

    GARMENTS: ClassVar[tuple[str, ...]] = ("dress", "top_skirt", "top_trousers", "coat")
    PATTERNS: ClassVar[tuple[str, ...]] = ("plain", "stripes", "dots", "check")
    LAYERS: ClassVar[tuple[str, ...]] = ("none", "jacket", "long_coat")
    FACTOR_NAMES: ClassVar[tuple[str, ...]] = (
        "garment", "sleeve", "length", "hue", "saturation", "value", "pattern", "layer",
        "height", "x_offset", "skin", "hair", "background")
    # Columns of to_vector(): categories one-hot, hue on the unit circle (it wraps), the rest as they are.
    VECTOR_NAMES: ClassVar[tuple[str, ...]] = (
        *(f"garment={g}" for g in GARMENTS), "sleeve", "length", "hue_cos", "hue_sin", "saturation", "value",
        *(f"pattern={p}" for p in PATTERNS), *(f"layer={layer}" for layer in LAYERS),
        "height", "x_offset", "skin", "hair", "background")

    def __post_init__(self) -> None:
        for name, choices in (("garment", self.GARMENTS), ("pattern", self.PATTERNS), ("layer", self.LAYERS)):
            if getattr(self, name) not in choices:
                raise AtelierError(f"{name} '{getattr(self, name)}' is unknown; use one of {', '.join(choices)}.")

    @property
    def garment_index(self) -> int:
        """Class label for conditional training."""
        return self.GARMENTS.index(self.garment)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values, keyed by FACTOR_NAMES (floats rounded to keep dataset.json readable)."""
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RunwayFactors:
        return cls(**{f.name: values[f.name] for f in fields(cls)})

    def to_vector(self) -> np.ndarray:
        """Fixed numeric encoding, float32 [len(VECTOR_NAMES)], for regression and direction evaluation."""
        def one_hot(value: str, choices: tuple[str, ...]) -> list[float]:
            return [float(value == c) for c in choices]

        angle = 2.0 * math.pi * self.hue
        return np.array([
            *one_hot(self.garment, self.GARMENTS), self.sleeve, self.length, math.cos(angle), math.sin(angle),
            self.saturation, self.value, *one_hot(self.pattern, self.PATTERNS), *one_hot(self.layer, self.LAYERS),
            self.height, self.x_offset, self.skin, self.hair, self.background], dtype=np.float32)

    @classmethod
    def from_vector(cls, vector: Sequence[float]) -> RunwayFactors:
        """Inverse of to_vector; categories are read as the largest of their one-hot columns."""
        v = dict(zip(cls.VECTOR_NAMES, (float(x) for x in vector), strict=True))

        def pick(prefix: str, choices: tuple[str, ...]) -> str:
            return max(choices, key=lambda c: v[f"{prefix}={c}"])

        hue = (math.atan2(v["hue_sin"], v["hue_cos"]) / (2.0 * math.pi)) % 1.0
        return cls(garment=pick("garment", cls.GARMENTS), sleeve=v["sleeve"], length=v["length"], hue=hue,
                   saturation=v["saturation"], value=v["value"], pattern=pick("pattern", cls.PATTERNS),
                   layer=pick("layer", cls.LAYERS), height=v["height"], x_offset=v["x_offset"], skin=v["skin"],
                   hair=v["hair"], background=v["background"])


def sample_factors(seed: int) -> RunwayFactors:
    """The factors of image ``seed``: the same seed always gives the same factors, on any machine."""
    rng = np.random.default_rng(seed)
    garment = RunwayFactors.GARMENTS[int(rng.integers(len(RunwayFactors.GARMENTS)))]
    sleeve, length, hue = (float(x) for x in rng.random(3))
    # Wearable colours: a quarter are neutrals (black, white, greys, stone); the rest are clear but rarely neon.
    if rng.random() < 0.25:
        saturation = float(rng.uniform(0.0, 0.12))
    else:
        saturation = float(rng.uniform(0.25, 0.75))
    value = float(np.clip(rng.beta(2.2, 1.5), 0.08, 0.97))
    pattern = str(rng.choice(RunwayFactors.PATTERNS, p=[0.55, 0.15, 0.15, 0.15]))
    layer = str(rng.choice(RunwayFactors.LAYERS, p=[0.60, 0.25, 0.15]))
    height, skin, hair, background = (float(x) for x in rng.random(4))
    x_offset = float(rng.uniform(-1.0, 1.0))
    return RunwayFactors(garment=garment, sleeve=sleeve, length=length, hue=hue, saturation=saturation, value=value,
                         pattern=pattern, layer=layer, height=height, x_offset=x_offset, skin=skin, hair=hair,
                         background=background)


# --- colours -------------------------------------------------------------------------------------------------------

SKIN_TONES = ((246, 221, 199), (231, 187, 150), (198, 140, 100), (141, 92, 62), (86, 56, 38))
HAIR_TONES = ((232, 214, 170), (184, 132, 74), (112, 70, 38), (58, 40, 30), (24, 20, 19))
BACKGROUND_TONES = ((204, 207, 212), (246, 241, 233))
SHOE_COLOR: Color = (34, 31, 31)


def _ramp(stops: Sequence[Color], t: float) -> Color:
    """Colour at ``t`` in 0..1 along evenly spaced stops."""
    pos = min(max(t, 0.0), 1.0) * (len(stops) - 1)
    i = min(int(pos), len(stops) - 2)
    frac = pos - i
    return tuple(round(a + (b - a) * frac) for a, b in zip(stops[i], stops[i + 1]))  # type: ignore[return-value]


def _hsv(h: float, s: float, v: float) -> Color:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0))
    return round(r * 255), round(g * 255), round(b * 255)


def _scale(color: Color, k: float) -> Color:
    return tuple(min(255, round(c * k)) for c in color)  # type: ignore[return-value]


@dataclass(frozen=True)
class Palette:
    main: Color  # dress, top or coat
    accent: Color  # pattern ink: contrasts with main so stripes and dots read at 64 px
    bottom: Color  # skirt or trousers of separates: a tonal shade of main, so main stays the dominant colour
    outer: Color  # jacket or long coat
    outer_trim: Color  # lapels of the outer layer
    detail: Color  # collar, belt and front edge of a coat
    skin: Color
    hair: Color
    background: Color
    shadow: Color


def palette(f: RunwayFactors) -> Palette:
    main = _hsv(f.hue, f.saturation, f.value)
    light = f.value > 0.55
    accent = _hsv(f.hue, min(1.0, f.saturation + 0.2), 0.2) if light else _hsv(f.hue, 0.06, 0.96)
    # Separates: a darker shade under a light top, a lighter one under a dark top, so the waist break shows.
    bottom = _hsv(f.hue, f.saturation * 0.8, f.value - 0.38 if f.value > 0.45 else f.value + 0.38)
    # The outer layer is its own colour: a muted complement, dark over light looks and light over dark ones.
    outer_value = 0.27 if f.value > 0.5 else 0.78
    outer = _hsv(f.hue + 0.5, 0.30 + 0.25 * f.saturation, outer_value)
    background = _ramp(BACKGROUND_TONES, f.background)
    return Palette(main=main, accent=accent, bottom=bottom, outer=outer, outer_trim=_scale(outer, 0.72),
                   detail=_scale(main, 0.6) if f.value > 0.3 else _hsv(f.hue, f.saturation, f.value + 0.25),
                   skin=_ramp(SKIN_TONES, f.skin), hair=_ramp(HAIR_TONES, f.hair), background=background,
                   shadow=_scale(background, 0.86))


# --- geometry ------------------------------------------------------------------------------------------------------

# Body landmarks in head units (right half; the left is mirrored). Legs: hip to ankle along outer and inner edges.
LEG_Y = (3.6, 5.4, 7.1)
LEG_OUTER_X = (0.80, 0.60, 0.42)
LEG_INNER_X = (0.04, 0.16, 0.22)
SHOULDER_JOINT: Point = (0.86, 1.50)
WRIST: Point = (1.36, 3.95)
ARM_WIDTH = (0.38, 0.25)  # at shoulder, at wrist
WAIST_Y, HIP_Y, CROTCH_Y = 2.85, 3.6, 3.95
HEM_Y_RANGE = (4.3, 7.3)  # length 0 mid-thigh .. 1 just above the shoes
TROUSER_Y_RANGE = (4.25, 7.15)  # shorts .. full length, ending at the ankle


@dataclass(frozen=True)
class Frame:
    """Maps head units to canvas pixels for one figure."""

    cx: float
    top: float
    head: float  # pixels per head unit

    def pt(self, x: float, y: float) -> Point:
        return self.cx + x * self.head, self.top + y * self.head

    def poly(self, points: Iterable[Point], mirror: bool = False) -> list[Point]:
        return [self.pt(-x if mirror else x, y) for x, y in points]

    def box(self, x0: float, y0: float, x1: float, y1: float) -> list[float]:
        (a, b), (c, d) = self.pt(x0, y0), self.pt(x1, y1)
        return [min(a, c), min(b, d), max(a, c), max(b, d)]


def frame_for(f: RunwayFactors, size: int) -> Frame:
    figure = size * (0.80 + 0.10 * f.height)  # ~85% of the frame on average
    sole = size * 0.955
    return Frame(cx=size * (0.5 + 0.07 * f.x_offset), top=sole - figure, head=figure / FIGURE_HEADS)


def _lerp(a: float, b: float, t: float) -> float:
    return a + (b - a) * t


def _leg_x(y: float, xs: Sequence[float]) -> float:
    return float(np.interp(y, LEG_Y, xs))


def _limb(start: Point, end: Point, w0: float, w1: float, round_start: bool = False) -> list[Point]:
    """Quadrilateral from ``start`` (width w0) to ``end`` (width w1), in head units; ``round_start`` caps the start
    with a half circle (a shoulder rather than a cut-off tube)."""
    dx, dy = end[0] - start[0], end[1] - start[1]
    norm = math.hypot(dx, dy) or 1.0
    nx, ny = -dy / norm, dx / norm
    body = [(start[0] + nx * w0 / 2, start[1] + ny * w0 / 2), (end[0] + nx * w1 / 2, end[1] + ny * w1 / 2),
            (end[0] - nx * w1 / 2, end[1] - ny * w1 / 2), (start[0] - nx * w0 / 2, start[1] - ny * w0 / 2)]
    if not round_start:
        return body
    # Half circle from the -n side round the back of the start point (away from ``end``) to the +n side.
    back = math.atan2(-dy, -dx)
    cap = [(start[0] + math.cos(back + a) * w0 / 2, start[1] + math.sin(back + a) * w0 / 2)
           for a in np.linspace(-math.pi / 2, math.pi / 2, 7)[1:-1]]
    return body + cap


def _along_arm(t: float) -> Point:
    return _lerp(SHOULDER_JOINT[0], WRIST[0], t), _lerp(SHOULDER_JOINT[1], WRIST[1], t)


def _bodice(bottom_y: float, bottom_x: float, sleeveless: bool) -> list[Point]:
    """Right half of a fitted upper body with a scoop neck, from the centre front neckline round to centre hem."""
    shoulder_x = 0.62 if sleeveless else 0.86  # sleeveless cuts in to show the shoulder
    return [(0.0, 1.52), (0.22, 1.22), (shoulder_x, 1.36), (0.76, 1.95), (0.57, WAIST_Y),
            (bottom_x, bottom_y), (0.0, bottom_y)]


def _mirror_join(half: list[Point]) -> list[Point]:
    """Whole outline from a right half listed centre-top to centre-bottom."""
    return half + [(-x, y) for x, y in reversed(half)]


def _skirt(hem_y: float, flare: float) -> list[Point]:
    """Right half of a skirt from the waist, widening by ``flare`` per head unit below the hip."""
    hem_x = 0.84 + flare * max(hem_y - HIP_Y, 0.0)
    return [(0.0, WAIST_Y - 0.05), (0.58, WAIST_Y - 0.05), (0.85, HIP_Y), (hem_x, hem_y), (hem_x * 0.5, hem_y + 0.06),
            (0.0, hem_y + 0.08)]


def _trouser_leg(hem_y: float) -> list[Point]:
    """Right trouser leg (with its half of the seat), wide-leg: it stands off the leg more towards the hem."""
    ys = np.linspace(HIP_Y, hem_y, 5)
    ease = [0.05 + 0.06 * (y - HIP_Y) / 3.5 for y in ys]
    outer = [(_leg_x(y, LEG_OUTER_X) + e, y) for y, e in zip(ys, ease)]
    inner = [(max(_leg_x(y, LEG_INNER_X) - e, 0.0), y) for y, e in zip(ys, ease)][::-1]
    return [(0.0, WAIST_Y - 0.05), (0.58, WAIST_Y - 0.05), *outer, *inner[:-1], (0.0, CROTCH_Y)]


def _outer_panel(f: RunwayFactors) -> list[Point]:
    """Right front panel of a jacket or long coat, worn open so the look underneath shows in the middle."""
    if f.layer == "jacket":
        hem_y, hem_x, front_x = 4.1, 0.98, 0.30
    else:
        hem_y, hem_x, front_x = 6.5, 1.22, 0.38
    return [(0.24, 1.18), (1.0, 1.31), (0.84, 1.95), (0.68, WAIST_Y), (hem_x, hem_y), (front_x, hem_y + 0.04),
            (0.30, 2.75), (0.46, 2.05)]


def _lapel() -> list[Point]:
    return [(0.24, 1.18), (0.46, 2.05), (0.30, 2.75), (0.22, 2.7), (0.36, 2.05), (0.16, 1.3)]


# --- patterns ------------------------------------------------------------------------------------------------------

# Pattern periods as fractions of the image side: at 64 px stripes repeat every 4 px, dots every 5.8 px and checks
# every 6.4 px; coarse enough to survive the downsample, fine enough to read as a print rather than as blocks.
PATTERN_PERIOD = {"stripes": 1 / 16, "dots": 1 / 11, "check": 1 / 10}


@functools.lru_cache(maxsize=32)
def _pattern_sheet(pattern: str, size: int) -> Image.Image:
    """Pattern ink coverage (L, 0..255) on a sheet twice the canvas, cropped per figure so the print moves with it."""
    period = size * PATTERN_PERIOD[pattern]  # canvas pixels
    yy, xx = np.mgrid[0:2 * size, 0:2 * size].astype(np.float32) / period
    if pattern == "stripes":  # Breton stripes: horizontal bands
        ink = (yy % 1.0) < 0.5
        return Image.fromarray((ink * 255).astype(np.uint8), "L")
    if pattern == "dots":  # staggered polka dots
        row = np.floor(yy)
        fx = (xx + 0.5 * (row % 2)) % 1.0 - 0.5
        fy = yy % 1.0 - 0.5
        ink = fx * fx + fy * fy < 0.3 ** 2
        return Image.fromarray((ink * 255).astype(np.uint8), "L")
    # Gingham-like check: half ink where one band crosses, full ink where both do.
    level = ((xx % 1.0) < 0.5).astype(np.float32) + ((yy % 1.0) < 0.5).astype(np.float32)
    return Image.fromarray((level * 127.5).astype(np.uint8), "L")


def _pattern_mask(pattern: str, size: int, frame: Frame) -> Image.Image:
    """Ink coverage for the whole canvas, in phase with the figure's centre line and the top of its head."""
    period = size * PATTERN_PERIOD[pattern]
    # Crop the sheet where its phase-zero point lands on (cx, top), so the print moves with the figure.
    left = round(math.ceil(frame.cx / period) * period - frame.cx)
    top = round(math.ceil(frame.top / period) * period - frame.top)
    return _pattern_sheet(pattern, size).crop((left, top, left + size, top + size))


# --- drawing -------------------------------------------------------------------------------------------------------


class _Canvas:
    """The supersampled picture plus helpers that draw head-unit shapes in flat or patterned colour."""

    def __init__(self, f: RunwayFactors, size: int, pal: Palette):
        self.f, self.size, self.pal = f, size, pal
        self.frame = frame_for(f, size)
        self.image = Image.new("RGB", (size, size), pal.background)
        self.draw = ImageDraw.Draw(self.image)

    def polygon(self, points: list[Point], color: Color, mirror: bool = False) -> None:
        self.draw.polygon(self.frame.poly(points, mirror), fill=color)

    def pair(self, half: list[Point], color: Color) -> None:
        """A shape and its mirror image (arms, legs, shoes, panels)."""
        self.polygon(half, color)
        self.polygon(half, color, mirror=True)

    def ellipse(self, x0: float, y0: float, x1: float, y1: float, color: Color) -> None:
        self.draw.ellipse(self.frame.box(x0, y0, x1, y1), fill=color)

    def garment(self, shapes: list[list[Point]], color: Color, patterned: bool) -> None:
        """Fill ``shapes`` with ``color``, then print the pattern inside them (masked, so it never spills)."""
        if not patterned or self.f.pattern == "plain":
            for shape in shapes:
                self.polygon(shape, color)
            return
        mask = Image.new("L", (self.size, self.size), 0)
        mask_draw = ImageDraw.Draw(mask)
        for shape in shapes:
            mask_draw.polygon(self.frame.poly(shape), fill=255)
        self.image.paste(color, mask=mask)
        ink = ImageChops.multiply(mask, _pattern_mask(self.f.pattern, self.size, self.frame))
        self.image.paste(self.pal.accent, mask=ink)


def _mirror_shapes(halves: list[list[Point]]) -> list[list[Point]]:
    return [shape for half in halves for shape in (half, [(-x, y) for x, y in half])]


def _draw_legs_and_shoes(c: _Canvas) -> None:
    leg = [(_leg_x(y, LEG_OUTER_X), y) for y in LEG_Y] + [(_leg_x(y, LEG_INNER_X), y) for y in reversed(LEG_Y)]
    leg = [(0.02, CROTCH_Y)] + leg + [(0.02, CROTCH_Y)]
    c.pair(leg, c.pal.skin)
    shoe = [(0.18, 7.08), (0.46, 7.08), (0.50, 7.35), (0.44, 7.50), (0.20, 7.50), (0.16, 7.30)]
    c.pair(shoe, SHOE_COLOR)


def _draw_head(c: _Canvas) -> None:
    pal = c.pal
    c.polygon([(-0.13, 0.8), (0.13, 0.8), (0.15, 1.4), (-0.15, 1.4)], pal.skin)  # neck
    c.ellipse(-0.43, 0.02, 0.43, 1.05, pal.hair)  # hair behind the face, falling to the jaw
    c.ellipse(-0.33, 0.12, 0.33, 1.0, pal.skin)  # face
    c.draw.chord(c.frame.box(-0.40, -0.02, 0.40, 0.78), 180, 360, fill=pal.hair)  # hairline


def _sleeve(sleeve: float, extra: float) -> list[Point] | None:
    """Right sleeve covering the top ``sleeve`` fraction of the arm, ``extra`` head units wider than the arm."""
    if sleeve < 0.04:
        return None
    t = max(sleeve, 0.12)  # even the shortest sleeve covers the shoulder cap
    end = _along_arm(t)
    width_end = _lerp(ARM_WIDTH[0], ARM_WIDTH[1], t) + extra + 0.04
    start = (SHOULDER_JOINT[0] - 0.03, SHOULDER_JOINT[1] - 0.04)
    return _limb(start, end, ARM_WIDTH[0] + extra + 0.06, width_end, round_start=True)


def _draw_arms(c: _Canvas) -> None:
    arm = _limb((SHOULDER_JOINT[0], SHOULDER_JOINT[1] - 0.08), WRIST, *ARM_WIDTH)
    c.pair(arm, c.pal.skin)
    for mirror in (False, True):
        sx = -SHOULDER_JOINT[0] if mirror else SHOULDER_JOINT[0]
        c.ellipse(sx - 0.17, SHOULDER_JOINT[1] - 0.22, sx + 0.17, SHOULDER_JOINT[1] + 0.1, c.pal.skin)
        wx = -WRIST[0] if mirror else WRIST[0]
        c.ellipse(wx - 0.13, WRIST[1] - 0.05, wx + 0.13, WRIST[1] + 0.32, c.pal.skin)  # hand


def _draw_main_garment(c: _Canvas) -> None:
    """Dress, top + skirt, top + trousers or coat, without sleeves (they go on after the arms)."""
    f, pal = c.f, c.pal
    sleeveless = f.sleeve < 0.04
    hem_y = _lerp(*HEM_Y_RANGE, f.length)
    if f.garment == "top_trousers":
        c.garment(_mirror_shapes([_trouser_leg(_lerp(*TROUSER_Y_RANGE, f.length))]), pal.bottom, patterned=False)
    if f.garment == "top_skirt":
        c.garment([_mirror_join(_skirt(hem_y, flare=0.16))], pal.bottom, patterned=False)
    if f.garment in ("top_skirt", "top_trousers"):
        # A top worn out over the waistband; its hem is where the colour changes.
        c.garment([_mirror_join(_bodice(3.25, 0.74, sleeveless))], pal.main, patterned=True)
    elif f.garment == "dress":
        body = _mirror_join(_bodice(WAIST_Y + 0.02, 0.57, sleeveless))
        c.garment([body, _mirror_join(_skirt(hem_y, flare=0.24))], pal.main, patterned=True)
    else:  # coat: straight from the shoulder, closed and belted, hem at `length`
        hem_x = 0.92 + 0.10 * (hem_y - HIP_Y)
        half = [(0.0, 1.62), (0.24, 1.2), (0.62 if sleeveless else 0.96, 1.32), (0.8, 1.95), (0.72, WAIST_Y),
                (0.88, HIP_Y), (hem_x, hem_y), (0.0, hem_y + 0.05)]
        c.garment([_mirror_join(half)], pal.main, patterned=True)
        _draw_coat_details(c, hem_y)


def _draw_coat_details(c: _Canvas, hem_y: float) -> None:
    """Collar, belt and front edge: what tells a coat from a dress at a glance."""
    pal = c.pal
    c.pair([(0.24, 1.2), (0.42, 1.32), (0.10, 2.1), (0.0, 1.62)], pal.detail)  # collar
    c.polygon([(-0.74, WAIST_Y - 0.08), (0.74, WAIST_Y - 0.08), (0.75, WAIST_Y + 0.12), (-0.75, WAIST_Y + 0.12)],
              pal.detail)  # belt
    c.polygon([(0.02, 2.1), (0.08, 2.1), (0.08, hem_y), (0.02, hem_y)], pal.detail)  # front edge


def _draw_outer_layer(c: _Canvas) -> None:
    if c.f.layer == "none":
        return
    panel = _outer_panel(c.f)
    c.pair(panel, c.pal.outer)
    c.pair(_lapel(), c.pal.outer_trim)


def _draw_sleeves(c: _Canvas) -> None:
    """Sleeves of the main garment, then of the outer layer over them; both follow `sleeve` so it stays visible."""
    f = c.f
    inner = _sleeve(f.sleeve, 0.0)
    if inner is None:
        return
    c.garment(_mirror_shapes([inner]), c.pal.main, patterned=True)
    if f.layer != "none":
        c.pair(_sleeve(f.sleeve, 0.06) or [], c.pal.outer)


def _draw_figure(c: _Canvas) -> None:
    pal = c.pal
    c.ellipse(-1.1, 7.38, 1.1, 7.62, pal.shadow)  # soft shadow on the runway floor
    _draw_legs_and_shoes(c)
    _draw_head(c)
    _draw_main_garment(c)
    _draw_outer_layer(c)
    _draw_arms(c)
    _draw_sleeves(c)


def render_runway(factors: RunwayFactors, resolution: int = 64, supersample: int = 4) -> np.ndarray:
    """Draw one look: uint8 [resolution, resolution, 3]. Deterministic: the same factors give the same pixels."""
    check_resolution(resolution)
    if supersample < 1:
        raise AtelierError(f"supersample must be 1 or more, not {supersample}.")
    size = resolution * supersample
    canvas = _Canvas(factors, size, palette(factors))
    _draw_figure(canvas)
    image = canvas.image
    if supersample > 1:
        # Box filter = exact area coverage: clean anti-aliased edges without the halos a sharpening filter leaves.
        image = image.reduce(supersample)
    return np.array(image, dtype=np.uint8)  # a writable copy: torch.from_numpy and in-place edits need one


def check_resolution(resolution: int) -> None:
    if resolution < 16 or resolution & (resolution - 1):
        raise AtelierError(f"resolution {resolution} is not supported; use a power of two of 16 or more "
                           "(StyleGAN2 doubles its resolution per block), e.g. 64.")


def render_looks(factors: Sequence[RunwayFactors], resolution: int = 64, supersample: int = 4) -> np.ndarray:
    """Images [N, H, W, 3] uint8 for explicit factors, in order (edited looks as well as sampled ones)."""
    images = np.zeros((len(factors), resolution, resolution, 3), dtype=np.uint8)
    for i, f in enumerate(factors):
        images[i] = render_runway(f, resolution, supersample)
    return images


def render_batch(seeds: Iterable[int], resolution: int = 64, supersample: int = 4
                 ) -> tuple[np.ndarray, list[RunwayFactors]]:
    """Images [N, H, W, 3] uint8 and their factors, for the given seeds in order."""
    factors = [sample_factors(int(s)) for s in seeds]
    return render_looks(factors, resolution, supersample), factors


def preview_grid(seed0: int = 0, resolution: int = 64, rows: int = 8, cols: int = 8) -> np.ndarray:
    """Images of seeds seed0.. laid out row by row: uint8 [rows*H, cols*W, 3]."""
    images, _ = render_batch(range(seed0, seed0 + rows * cols), resolution)
    return images.reshape(rows, cols, resolution, resolution, 3).swapaxes(1, 2).reshape(
        rows * resolution, cols * resolution, 3)


# --- dataset files (stylegan2-ada layout) --------------------------------------------------------------------------


def _render_png(seed: int, resolution: int, supersample: int) -> tuple[bytes, RunwayFactors]:
    """One encoded image; module-level so worker processes can run it."""
    factors = sample_factors(seed)
    buffer = io.BytesIO()
    Image.fromarray(render_runway(factors, resolution, supersample)).save(buffer, format="PNG")
    return buffer.getvalue(), factors


def _rendered(seeds: range, resolution: int, supersample: int, workers: int
              ) -> Iterator[tuple[bytes, RunwayFactors]]:
    render = functools.partial(_render_png, resolution=resolution, supersample=supersample)
    if workers <= 1:
        yield from map(render, seeds)
        return
    import multiprocessing

    with multiprocessing.get_context().Pool(workers) as pool:
        # imap keeps seed order, so image i is always seed seed0 + i whatever the worker count.
        yield from pool.imap(render, seeds, chunksize=64)


def write_dataset(out: Path | str, count: int, resolution: int = 64, seed0: int = 0,
                  conditional_on: str | None = "garment", workers: int = 1, overwrite: bool = False,
                  supersample: int = 4, progress: bool = True) -> Path:
    """Write images of seeds seed0..seed0+count-1 and their dataset.json, as a .zip or a folder; returns ``out``.

    The result only appears once complete: everything goes to a hidden temporary name beside ``out`` first.
    """
    from tqdm import tqdm

    out = Path(out)
    check_resolution(resolution)
    if count < 1:
        raise AtelierError(f"count must be at least 1, not {count}.")
    if conditional_on not in (None, *LABEL_CHOICES):
        raise AtelierError(f"cannot label images by '{conditional_on}'; use one of {', '.join(LABEL_CHOICES)} "
                           "or none.")
    labels: dict[str, int] = {}
    factors: list[list[Any]] = []
    with DatasetWriter(out, force=overwrite) as writer:
        rendered = _rendered(range(seed0, seed0 + count), resolution, supersample, workers)
        for png, f in tqdm(rendered, total=count, unit="img", desc="synth", disable=not progress):
            name = writer.add_png(png)
            labels[name] = f.garment_index
            factors.append([name, f.to_dict()])
        return writer.commit(
            labels if conditional_on else None, list(RunwayFactors.GARMENTS) if conditional_on else None,
            extra={"factors": factors, "factor_names": list(RunwayFactors.FACTOR_NAMES),
                   "vector_names": list(RunwayFactors.VECTOR_NAMES),
                   "generator": {"name": "atelier-synth", "resolution": resolution, "supersample": supersample,
                                 "seed0": seed0, "count": count}})


def read_factors(dataset: Path | str) -> list[tuple[str, RunwayFactors]]:
    """The (image name, factors) pairs recorded in a dataset written by write_dataset (zip or folder)."""
    dataset = Path(dataset)
    try:
        if dataset.is_dir():
            meta = json.loads((dataset / "dataset.json").read_text())
        else:
            with zipfile.ZipFile(dataset) as archive:
                meta = json.loads(archive.read("dataset.json"))
    except (OSError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
        raise AtelierError(f"cannot read dataset.json from {dataset} ({exc}); point at a folder or .zip written "
                           "by `atelier synth`.") from exc
    if "factors" not in meta:
        raise AtelierError(f"{dataset} has no recorded factors; it was not written by `atelier synth`.")
    return [(name, RunwayFactors.from_dict(values)) for name, values in meta["factors"]]


# --- streaming for training ----------------------------------------------------------------------------------------


def shard_seeds(seed0: int, shard: int, shards: int, count: int | None = None) -> Iterator[int]:
    """Seeds of one shard: seed0 + shard, + shards, + 2*shards, ... (below seed0 + count when count is given)."""
    seed = seed0 + shard
    while count is None or seed < seed0 + count:
        yield seed
        seed += shards


@functools.cache
def _stream_class() -> type:
    """Builds SyntheticRunwayStream on first use, so that rendering and dataset writing never import torch."""
    import torch
    from torch.utils.data import IterableDataset, get_worker_info

    class SyntheticRunwayStream(IterableDataset):
        """Endless (image, label) pairs: uint8 CHW tensors of seeds seed0, seed0+1, ... split across readers.

        Each DataLoader worker of each DDP rank takes every ``world_size * num_workers``-th seed, so no two readers
        ever yield the same image. ``label`` is the garment index when ``conditional_on='garment'``, else -1 (no
        class; an int rather than None so the default DataLoader collate works). ``rank``/``world_size`` default
        to torch.distributed's when it is initialised. ``start`` skips that many seeds of every shard, so a resumed
        run continues its sequence; ``count`` makes the stream finite (seeds below seed0 + count).
        """

        def __init__(self, resolution: int = 64, seed0: int = 0, conditional_on: str | None = None,
                     rank: int | None = None, world_size: int | None = None, start: int = 0,
                     count: int | None = None, supersample: int = 4):
            super().__init__()
            check_resolution(resolution)
            if conditional_on not in (None, *LABEL_CHOICES):
                raise AtelierError(f"cannot label images by '{conditional_on}'; use one of "
                                   f"{', '.join(LABEL_CHOICES)} or None.")
            distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
            self.rank = rank if rank is not None else (torch.distributed.get_rank() if distributed else 0)
            self.world_size = world_size if world_size is not None else (
                torch.distributed.get_world_size() if distributed else 1)
            if not 0 <= self.rank < self.world_size:
                raise AtelierError(f"rank {self.rank} is outside 0..{self.world_size - 1}; pass the process's rank "
                                   "and the number of processes.")
            self.resolution, self.seed0, self.conditional_on = resolution, seed0, conditional_on
            self.start, self.count, self.supersample = start, count, supersample
            self.num_classes = len(RunwayFactors.GARMENTS) if conditional_on else 0

        def __iter__(self) -> Iterator[tuple[torch.Tensor, int]]:
            worker = get_worker_info()
            workers, worker_id = (worker.num_workers, worker.id) if worker is not None else (1, 0)
            shards = self.world_size * workers
            shard = self.rank * workers + worker_id
            seeds = shard_seeds(self.seed0 + self.start * shards, shard, shards,
                                None if self.count is None else self.count - self.start * shards)
            for seed in seeds:
                factors = sample_factors(seed)
                image = render_runway(factors, self.resolution, self.supersample)
                label = factors.garment_index if self.conditional_on else -1
                yield torch.from_numpy(image).permute(2, 0, 1).contiguous(), label

    # Pickle (DataLoader workers started by spawn) finds the class by this name through the module __getattr__.
    SyntheticRunwayStream.__module__ = __name__
    SyntheticRunwayStream.__qualname__ = "SyntheticRunwayStream"
    return SyntheticRunwayStream


def __getattr__(name: str) -> Any:
    if name == "SyntheticRunwayStream":
        return _stream_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
