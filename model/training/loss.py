"""StyleGAN2-ADA's losses, split as stylegan2-ada's StyleGAN2Loss splits them.

Generator: the non-saturating logistic loss, plus path-length regularisation. Discriminator: the logistic loss on
fakes and reals, plus R1 on reals. Both regularisers are lazy: they run every `pl_interval` / `r1_interval` steps
with their weight multiplied by the interval, and the optimisers' lr and betas are scaled to match
(`lazy_ratio`). The loss only accumulates gradients; the training loop owns the optimisers and steps them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from model.network.networks import Discriminator, Generator
from model.training.augment import AugmentPipe
from model.training.config import TrainConfig
from model.training.distributed import Distributed, mean_over_ranks, wrap_for_ranks


def lazy_ratio(interval: int, regularised: bool) -> float:
    """How much of an optimiser's lr (and of its betas' exponent) a lazily regularised network gets, so that its
    steps match a network regularised at every step (StyleGAN2, appendix C)."""
    return interval / (interval + 1) if regularised else 1.0


def track_w_avg(mapping: torch.nn.Module, w: torch.Tensor, dist_info: Distributed) -> None:
    """Move the tracked average of w toward this step's batch mean, averaged over all processes.

    Averaging across ranks keeps the buffer identical everywhere (each rank sees different latents).
    """
    with torch.no_grad():
        batch_mean = mean_over_ranks(w.detach().mean(dim=0), dist_info)
        mapping.w_avg.copy_(batch_mean.lerp(mapping.w_avg, mapping.w_avg_beta))


@dataclass
class StyleGAN2Loss:
    cfg: TrainConfig
    G: Generator
    D: Discriminator
    augment: AugmentPipe
    pl_mean: torch.Tensor            # the running mean path length; the training state's own tensor, saved with it
    dist_info: Distributed
    G_mapping: torch.nn.Module       # G.mapping, G.synthesis and D as called: under torchrun their DDP wrappers
    G_synthesis: torch.nn.Module
    D_ddp: torch.nn.Module

    @classmethod
    def wrapping(cls, cfg: TrainConfig, G: Generator, D: Discriminator, augment: AugmentPipe,
                 pl_mean: torch.Tensor, dist_info: Distributed, device: torch.device) -> StyleGAN2Loss:
        """The loss over these networks, each wrapped for the processes of the run."""
        return cls(cfg, G, D, augment, pl_mean, dist_info, G_mapping=wrap_for_ranks(G.mapping, dist_info, device),
                   G_synthesis=wrap_for_ranks(G.synthesis, dist_info, device),
                   D_ddp=wrap_for_ranks(D, dist_info, device))

    # The lazy regularisation schedule: which steps add a regulariser.

    def regularises_generator(self, step: int) -> bool:
        return self.cfg.pl_weight > 0 and step % self.cfg.pl_interval == 0

    def regularises_discriminator(self, step: int) -> bool:
        return self.cfg.gamma > 0 and step % self.cfg.r1_interval == 0

    # The networks as the losses call them.

    def run_G(self, z: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # Map both latents in one call: under DDP every wrapped module must run exactly once per backward.
        both = self.G_mapping(torch.cat([z, torch.randn_like(z)]), torch.cat([c, c]), update_w_avg=False)
        ws, ws_other = both[:z.shape[0]], both[z.shape[0]:]
        if torch.is_grad_enabled():
            track_w_avg(self.G.mapping, ws[:, 0], self.dist_info)
        if self.cfg.style_mixing > 0 and float(torch.rand([])) < self.cfg.style_mixing:
            # From a random layer on, use another latent's w: teaches the layers to act independently.
            cutoff = int(torch.randint(1, ws.shape[1], []))
            ws = torch.cat([ws[:, :cutoff], ws_other[:, cutoff:]], dim=1)
        return self.G_synthesis(ws), ws

    def run_D(self, img: torch.Tensor, c: torch.Tensor, for_generator: bool = False) -> torch.Tensor:
        # The generator step uses the plain D: its weights are frozen then, so DDP has nothing to synchronise.
        return (self.D if for_generator else self.D_ddp)(self.augment(img), c)

    def _latents(self, count: int, like: torch.Tensor) -> torch.Tensor:
        return torch.randn([count, self.cfg.z_dim], device=like.device)

    # The losses. Each backpropagates into whichever network has requires_grad set and returns its terms for the log.

    def accumulate_generator(self, gen_c: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
        """Non-saturating loss, and on its lazy schedule the path-length penalty."""
        fake, _ = self.run_G(self._latents(gen_c.shape[0], gen_c), gen_c)
        loss_G = F.softplus(-self.run_D(fake, gen_c, for_generator=True)).mean()
        loss_G.backward()
        terms = {"loss_G": loss_G}
        if self.regularises_generator(step):
            terms["pl_penalty"] = self._path_length_penalty(gen_c)
        return terms

    def _path_length_penalty(self, gen_c: torch.Tensor) -> torch.Tensor:
        """Keeps the W -> image Jacobian a consistent size, on half the batch."""
        pl_batch = max(gen_c.shape[0] // 2, 1)
        img, ws = self.run_G(self._latents(pl_batch, gen_c), gen_c[:pl_batch])
        noise = torch.randn_like(img) / math.sqrt(img.shape[2] * img.shape[3])
        grads, = torch.autograd.grad((img * noise).sum(), ws, create_graph=True)
        lengths = grads.square().sum(2).mean(1).sqrt()
        self.pl_mean.copy_(self.pl_mean.lerp(lengths.mean().detach(), 0.01))
        penalty = (lengths - self.pl_mean).square().mean() * self.cfg.pl_weight * self.cfg.pl_interval
        # The zero term gives every synthesis parameter a gradient (biases do not change the Jacobian): under DDP
        # each rank waits for all of them.
        (penalty + img[:, 0, 0, 0].sum() * 0).backward()
        return penalty

    def accumulate_discriminator(self, real: torch.Tensor, real_c: torch.Tensor, gen_c: torch.Tensor,
                                 step: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Logistic loss on fakes and reals, and on its lazy schedule R1 on reals. Also returns D's logits for the
        reals, which ADA measures overfitting by."""
        with torch.no_grad():
            fake, _ = self.run_G(self._latents(gen_c.shape[0], gen_c), gen_c)
        loss_fake = F.softplus(self.run_D(fake, gen_c)).mean()
        loss_fake.backward()
        do_r1 = self.regularises_discriminator(step)
        real_in = real.detach().requires_grad_(do_r1)
        real_logits = self.run_D(real_in, real_c)
        loss_real = F.softplus(-real_logits).mean()
        terms = {}
        if do_r1:
            grads, = torch.autograd.grad(real_logits.sum(), real_in, create_graph=True)
            r1 = grads.square().sum([1, 2, 3]).mean()
            loss_real = loss_real + r1 * (self.cfg.gamma / 2) * self.cfg.r1_interval
            terms["r1"] = r1
        loss_real.backward()
        terms["loss_D"] = loss_fake + F.softplus(-real_logits.detach()).mean()
        return terms, real_logits.detach()
