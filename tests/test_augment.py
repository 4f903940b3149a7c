"""The ADA pipeline (model.training.augment): which transformations each named pipeline applies, and the controller of
p."""
from __future__ import annotations

import pytest
import torch

from model.training.augment import BLIT, COLOUR, GEOMETRIC, PIPES, AdaController, AugmentPipe

PALETTE = torch.tensor([[0.9, 0.9, 0.85], [-0.8, 0.2, 0.4], [0.1, -0.7, -0.2]])  # background, two garment colours


def figures(n: int = 16, size: int = 16) -> torch.Tensor:
    """[n, 3, size, size] images in three colours, laid out asymmetrically (any move or turn changes the layout)."""
    index = torch.zeros([size, size], dtype=torch.long)
    index[3:11, 2:6] = 1
    index[9:14, 7:9] = 2
    return PALETTE[index].permute(2, 0, 1).expand(n, 3, size, size).clone()


def layout(images: torch.Tensor) -> torch.Tensor:
    """Per image, which pixels equal its top-left pixel: the picture's layout, whatever the colours became."""
    return (images - images[:, :, :1, :1]).abs().amax(dim=1) < 1e-4


def pipe(name: str, p: float) -> AugmentPipe:
    augment = AugmentPipe(PIPES[name])
    augment.p.fill_(p)
    return augment


def test_the_pipelines_cover_adas_transformations():
    required = {"xflip", "rotate90", "xint", "scale", "aniso", "rotate", "xfrac", "brightness", "contrast",
                "saturation", "hue"}
    assert required <= set(PIPES["bgc"])
    assert set(PIPES["bg"]) == set(GEOMETRIC) and set(PIPES["color"]) == set(COLOUR)
    assert set(PIPES["blit"]) | set(PIPES["geom"]) == set(GEOMETRIC)
    with pytest.raises(ValueError, match="unknown augmentations"):
        AugmentPipe(("xflip", "cutout"))


@pytest.mark.parametrize("name", sorted(PIPES))
def test_p_zero_leaves_every_image_alone(name):
    images = figures()
    assert torch.equal(pipe(name, 0.0)(images), images)


def test_colour_pipeline_never_moves_the_figure():
    torch.manual_seed(0)
    images = figures(64)
    out = pipe("color", 1.0)(images)
    assert torch.equal(layout(out), layout(images))  # same pixels share a colour as before: nothing moved
    assert (out - images).abs().amax(dim=(1, 2, 3)).min() > 1e-3  # at p = 1 every image's colours changed


def test_geometric_pipeline_moves_figures():
    torch.manual_seed(0)
    images = figures(64)
    moved = (layout(pipe("bg", 1.0)(images)) != layout(images)).any(dim=(1, 2))
    assert moved.float().mean() > 0.9


def test_blit_moves_whole_pixels_without_blurring():
    """Flips, quarter turns and whole-pixel shifts copy pixels: every output pixel is one of the input colours."""
    torch.manual_seed(0)
    images = figures(64)
    out = pipe("blit", 1.0)(images)
    distance = (out.permute(0, 2, 3, 1)[..., None, :] - PALETTE).abs().amax(dim=-1).amin(dim=-1)
    assert distance.max() < 1e-4
    assert (layout(out) != layout(images)).any(dim=(1, 2)).float().mean() > 0.7
    assert set(BLIT) == {"xflip", "rotate90", "xint"}


def test_generator_gradients_flow_through_the_pipeline():
    torch.manual_seed(0)
    images = figures(8).requires_grad_(True)
    pipe("bgc", 0.8)(images).square().sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0


def test_controller_raises_p_when_d_is_overconfident_and_lowers_it_otherwise():
    augment = pipe("bgc", 0.5)
    controller = AdaController(augment, target=0.6, interval=2, speed_kimg=1.0)
    for _ in range(2):
        controller.record(torch.ones(16))  # every real image scored positive: r_t = 1 > 0.6
    assert controller.step(16) == pytest.approx(1.0)
    assert float(augment.p) == pytest.approx(0.5 + 16 * 2 / 1000)
    for _ in range(2):
        controller.record(-torch.ones(16))  # r_t = -1 < 0.6
    controller.step(16)
    assert float(augment.p) == pytest.approx(0.5)
    assert controller.step(16) is None  # nothing recorded since the last adjustment
