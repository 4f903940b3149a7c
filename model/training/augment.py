"""Adaptive discriminator augmentation (ADA), written for Atelier.

Every image shown to the discriminator, real or generated, goes through the same random pipeline; each
transformation is applied with probability p. Geometric transforms are composed into one 3x3 matrix per image and
applied in a single resampling pass; colour transforms into one 4x4 matrix. Because the transforms are
differentiable, generator gradients flow through them, and because they are applied to real and fake alike with
the same p < ~0.8, they do not leak into the generated distribution.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

BLIT = ("xflip", "rotate90", "xint")                # pixel moves: nothing is resampled
GEOM = ("scale", "rotate", "aniso", "xfrac")          # general geometric transforms
GEOMETRIC = BLIT + GEOM
COLOUR = ("brightness", "contrast", "lumaflip", "hue", "saturation")

# Named pipelines, as stylegan2-ada-pytorch's --augpipe names them (b = blit, g = geom, c = color). "bgc" is ADA's
# default. "color" leaves figure size and position alone: D then sees them exactly as they were drawn, which
# matters when size and position are themselves factors of the data (as on the synthetic runway stream).
PIPES: dict[str, tuple[str, ...]] = {"blit": BLIT, "geom": GEOM, "color": COLOUR, "bg": GEOMETRIC,
                                     "bgc": GEOMETRIC + COLOUR}


def _translate(tx: torch.Tensor, ty: torch.Tensor) -> torch.Tensor:
    m = torch.eye(3, device=tx.device).repeat(tx.shape[0], 1, 1)
    m[:, 0, 2], m[:, 1, 2] = tx, ty
    return m


def _scale(sx: torch.Tensor, sy: torch.Tensor) -> torch.Tensor:
    m = torch.eye(3, device=sx.device).repeat(sx.shape[0], 1, 1)
    m[:, 0, 0], m[:, 1, 1] = sx, sy
    return m


def _rotate(theta: torch.Tensor) -> torch.Tensor:
    m = torch.eye(3, device=theta.device).repeat(theta.shape[0], 1, 1)
    m[:, 0, 0], m[:, 0, 1] = torch.cos(theta), -torch.sin(theta)
    m[:, 1, 0], m[:, 1, 1] = torch.sin(theta), torch.cos(theta)
    return m


class AugmentPipe(torch.nn.Module):
    """ADA pipeline. ``p`` is a buffer so it is saved and restored with the training state."""

    def __init__(self, ops: tuple[str, ...] = PIPES["bgc"], scale_std: float = 0.2, rotate_max: float = 1.0,
                 aniso_std: float = 0.2, xfrac_std: float = 0.125, xint_max: float = 0.125,
                 brightness_std: float = 0.2, contrast_std: float = 0.5, hue_max: float = 1.0,
                 saturation_std: float = 1.0):
        super().__init__()
        unknown = set(ops) - set(GEOMETRIC + COLOUR)
        if unknown:
            raise ValueError(f"unknown augmentations {sorted(unknown)}")
        self.ops = ops
        self.scale_std, self.rotate_max, self.aniso_std = scale_std, rotate_max, aniso_std
        self.xfrac_std, self.xint_max = xfrac_std, xint_max
        self.brightness_std, self.contrast_std = brightness_std, contrast_std
        self.hue_max, self.saturation_std = hue_max, saturation_std
        self.register_buffer("p", torch.zeros([]))

    def _mask(self, n: int, device: torch.device) -> torch.Tensor:
        return (torch.rand([n], device=device) < self.p).float()

    def _geometric_matrix(self, n: int, device: torch.device, height: int, width: int) -> torch.Tensor:
        """Matrix mapping output coordinates to input coordinates, in normalised [-1, 1] units."""
        m = torch.eye(3, device=device).repeat(n, 1, 1)
        one = torch.ones([n], device=device)
        if "xflip" in self.ops:
            flip = torch.randint(0, 2, [n], device=device) * self._mask(n, device)
            m = m @ _scale(1 - 2 * flip, one)
        if "rotate90" in self.ops:
            quarter = torch.randint(0, 4, [n], device=device) * self._mask(n, device)
            m = m @ _rotate(-math.pi / 2 * quarter)
        if "xint" in self.ops:
            # Whole pixels (one pixel is 2 / size in normalised units), so the shift copies pixels without blurring.
            pixels = torch.tensor([width, height], device=device, dtype=torch.float32)
            shift = torch.round((torch.rand([n, 2], device=device) * 2 - 1) * self.xint_max * pixels) * 2 / pixels
            shift = shift * self._mask(n, device)[:, None]
            m = m @ _translate(shift[:, 0], shift[:, 1])
        if "scale" in self.ops:
            s = torch.exp2(torch.randn([n], device=device) * self.scale_std * self._mask(n, device))
            m = m @ _scale(s, s)
        p_rot = 1 - torch.sqrt(torch.clamp(1 - self.p, min=0))  # two rotations -> same total chance as one
        if "rotate" in self.ops:
            theta = (torch.rand([n], device=device) * 2 - 1) * math.pi * self.rotate_max
            m = m @ _rotate(-theta * (torch.rand([n], device=device) < p_rot).float())
        if "aniso" in self.ops:
            s = torch.exp2(torch.randn([n], device=device) * self.aniso_std * self._mask(n, device))
            m = m @ _scale(s, 1 / s)
        if "rotate" in self.ops:
            theta = (torch.rand([n], device=device) * 2 - 1) * math.pi * self.rotate_max
            m = m @ _rotate(-theta * (torch.rand([n], device=device) < p_rot).float())
        if "xfrac" in self.ops:
            shift = torch.randn([n, 2], device=device) * self.xfrac_std * 2 * self._mask(n, device)[:, None]
            m = m @ _translate(shift[:, 0], shift[:, 1])
        return m

    def _colour_matrix(self, n: int, device: torch.device) -> torch.Tensor:
        c = torch.eye(4, device=device).repeat(n, 1, 1)
        luma = torch.tensor([1.0, 1.0, 1.0, 0.0], device=device) / math.sqrt(3)
        outer = torch.outer(luma, luma)
        if "brightness" in self.ops:
            b = torch.randn([n], device=device) * self.brightness_std * self._mask(n, device)
            c = _translate3(b) @ c
        if "contrast" in self.ops:
            s = torch.exp2(torch.randn([n], device=device) * self.contrast_std * self._mask(n, device))
            c = _scale3(s) @ c
        if "lumaflip" in self.ops:
            flip = torch.randint(0, 2, [n], device=device).float() * self._mask(n, device)
            c = (torch.eye(4, device=device) - 2 * outer * flip[:, None, None]) @ c
        if "hue" in self.ops:
            theta = (torch.rand([n], device=device) * 2 - 1) * math.pi * self.hue_max * self._mask(n, device)
            c = _rotate_about_luma(theta) @ c
        if "saturation" in self.ops:
            s = torch.exp2(torch.randn([n], device=device) * self.saturation_std * self._mask(n, device))
            c = (outer + (torch.eye(4, device=device) - outer) * s[:, None, None]) @ c
        return c

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images [N, 3, H, W] in [-1, 1] -> augmented images of the same shape."""
        if float(self.p) <= 0:
            return images
        n, channels, height, width = images.shape
        device = images.device
        geo = self._geometric_matrix(n, device, height, width)
        if not torch.allclose(geo, torch.eye(3, device=device).expand_as(geo)):
            grid = F.affine_grid(geo[:, :2, :], [n, channels, height, width], align_corners=False)
            # Reflection padding keeps the background light and continuous, as the original's mirror padding does.
            images = F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
        if channels == 3:
            col = self._colour_matrix(n, device)
            flat = images.reshape(n, 3, height * width)
            images = (col[:, :3, :3] @ flat + col[:, :3, 3:]).reshape(n, 3, height, width)
        return images


def _translate3(b: torch.Tensor) -> torch.Tensor:
    m = torch.eye(4, device=b.device).repeat(b.shape[0], 1, 1)
    m[:, :3, 3] = b[:, None]
    return m


def _scale3(s: torch.Tensor) -> torch.Tensor:
    m = torch.eye(4, device=s.device).repeat(s.shape[0], 1, 1)
    m[:, 0, 0] = m[:, 1, 1] = m[:, 2, 2] = s
    return m


def _rotate_about_luma(theta: torch.Tensor) -> torch.Tensor:
    """Rotation of RGB about the grey axis (a hue rotation), Rodrigues' formula."""
    axis = torch.ones(3, device=theta.device) / math.sqrt(3)
    k = torch.tensor([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]], device=theta.device)
    eye = torch.eye(3, device=theta.device)
    sin, cos = torch.sin(theta)[:, None, None], torch.cos(theta)[:, None, None]
    rot = eye + sin * k + (1 - cos) * (k @ k)
    m = torch.eye(4, device=theta.device).repeat(theta.shape[0], 1, 1)
    m[:, :3, :3] = rot
    return m


class AdaController:
    """Adjusts p so that the share of real images D scores positive, E[sign(D(real))], approaches `target`."""

    def __init__(self, pipe: AugmentPipe, target: float = 0.6, interval: int = 4, speed_kimg: float = 100.0):
        self.pipe, self.target, self.interval, self.speed_kimg = pipe, target, interval, speed_kimg
        self._signs: list[float] = []
        self._count = 0

    def record(self, real_logits: torch.Tensor) -> None:
        self._signs.append(float(torch.sign(real_logits.detach()).sum()))
        self._count += real_logits.numel()

    def pending(self) -> list:
        """Signs gathered since the last adjustment (saved in snapshots so a resumed run adjusts at the same step)."""
        return [list(self._signs), self._count]

    def restore(self, signs: list[float], count: int) -> None:
        self._signs, self._count = list(signs), int(count)

    def step(self, batch_size: int) -> float | None:
        """Every `interval` steps: nudge p; returns the measured overfitting heuristic r_t (or None)."""
        if len(self._signs) < self.interval or self._count == 0:
            return None
        rt = sum(self._signs) / self._count
        adjust = math.copysign(1.0, rt - self.target) * (batch_size * self.interval) / (self.speed_kimg * 1000)
        self.pipe.p.copy_((self.pipe.p + adjust).clamp(0, 1))
        self._signs, self._count = [], 0
        return rt
