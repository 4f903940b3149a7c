"""What a training run is asked to do (TrainConfig), and the checks that refuse a setting before any work starts.

The checks run in two steps because one needs the data: `check_config` before the dataset is opened (batch, groups,
augmentation pipeline), `check_channel_base` once its resolution is known.
"""
from __future__ import annotations

from dataclasses import dataclass

from core.errors import AtelierError
from model.training.augment import PIPES

SYNTHETIC = "synthetic"


@dataclass
class TrainConfig:
    data: str = SYNTHETIC            # a dataset zip/folder, or "synthetic" for the endless runway stream
    resolution: int = 64             # used for the synthetic stream; a dataset decides its own
    conditional: bool = False        # use dataset class labels (garment kind for the synthetic stream)
    batch: int = 16
    z_dim: int = 512
    w_dim: int = 512
    map_layers: int = 2
    channel_base: int = 4096
    channel_max: int = 64
    num_fp16_res: int = 0
    cpu_bf16_res: int = 0             # on a CPU, the N highest resolutions of G and D train in bfloat16
    conv_clamp: float | None = 256
    mbstd_group: int = 4
    mbstd_channels: int = 1          # D's minibatch-std features (each over its own group of channels)
    glr: float = 0.0025
    dlr: float = 0.0025
    gamma: float = 0.05              # R1 weight; small images need little
    r1_interval: int = 16
    pl_weight: float = 0.0           # path-length regularisation (0 = off, 2 = the paper's value)
    pl_interval: int = 4
    style_mixing: float = 0.9
    ema_kimg: float | None = None    # default: batch * 10 / 32
    ema_rampup: float | None = 0.05
    augment: str = "ada"             # ada | fixed | none
    augment_p: float = 0.0           # initial (ada) or constant (fixed) p
    augpipe: str = "bgc"             # which transformations (model.training.augment.PIPES)
    ada_target: float = 0.6
    ada_interval: int = 4
    ada_kimg: float = 100.0          # how fast p may move: 0 -> 1 in this many kimg
    kimg: float = 1000.0             # stop after this many thousand real images shown to D
    snap_kimg: float = 4.0           # snapshot every this many kimg ...
    snap_minutes: float = 5.0        # ... or every this many minutes, whichever comes first
    keep_snapshots: int = 3
    quality_samples: int = 1000      # images per snapshot for the Fréchet distance that picks the best (0 = off)
    seed: int = 0
    device: str = "auto"
    threads: int = 0                 # CPU threads (0 = torch default)
    grid_seeds: tuple[int, ...] = tuple(range(64))

    def ema_nimg(self) -> float:
        return (self.ema_kimg if self.ema_kimg is not None else self.batch * 10 / 32) * 1000

    def generator_kwargs(self, resolution: int, c_dim: int) -> dict:
        return dict(z_dim=self.z_dim, c_dim=c_dim, w_dim=self.w_dim, img_resolution=resolution, img_channels=3,
                    mapping_kwargs=dict(num_layers=self.map_layers),
                    synthesis_kwargs=dict(channel_base=self.channel_base, channel_max=self.channel_max,
                                          num_fp16_res=self.num_fp16_res, conv_clamp=self.conv_clamp))

    def discriminator_kwargs(self, resolution: int, c_dim: int) -> dict:
        return dict(c_dim=c_dim, img_resolution=resolution, img_channels=3, channel_base=self.channel_base,
                    channel_max=self.channel_max, num_fp16_res=self.num_fp16_res, conv_clamp=self.conv_clamp,
                    epilogue_kwargs=self._epilogue_kwargs())

    def _epilogue_kwargs(self) -> dict:
        kwargs = dict(mbstd_group_size=self.mbstd_group)
        if self.mbstd_channels != 1:  # left out at the default so runs from before the option still resume
            kwargs["mbstd_num_channels"] = self.mbstd_channels
        return kwargs


def check_config(cfg: TrainConfig, world: int) -> int:
    """Refuse settings the networks or the processes cannot run with; returns each process's share of the batch."""
    if cfg.batch % world:
        raise AtelierError(f"batch {cfg.batch} must be divisible by the number of processes ({world})")
    local_batch = cfg.batch // world
    if cfg.augpipe not in PIPES:
        raise AtelierError(f"--augpipe must be one of {', '.join(PIPES)}, not {cfg.augpipe!r} (bgc is ADA's default)")
    if cfg.mbstd_group < 1:
        raise AtelierError(f"--mbstd-group must be at least 1 (4 is the usual choice), not {cfg.mbstd_group}")
    if local_batch % min(cfg.mbstd_group, local_batch):
        raise AtelierError(f"the per-process batch ({local_batch}) must be a multiple of the minibatch-std group "
                           f"size ({cfg.mbstd_group}); choose --batch as a multiple of "
                           f"{cfg.mbstd_group * world}")
    channels_at_4 = min(cfg.channel_base // 4, cfg.channel_max)
    if cfg.mbstd_channels < 0 or (cfg.mbstd_channels and channels_at_4 % cfg.mbstd_channels):
        raise AtelierError(f"--mbstd-channels must divide D's {channels_at_4} channels at 4x4 (1, 2, 4, ...), "
                           f"not {cfg.mbstd_channels}")
    return local_batch


def check_channel_base(cfg: TrainConfig, resolution: int) -> None:
    """The data decides the resolution, so this check waits until the data is open."""
    if cfg.channel_base < resolution:  # the highest-resolution blocks would get no channels at all
        raise AtelierError(f"--cbase {cfg.channel_base} is below the data's resolution ({resolution} px): "
                           f"use at least {resolution} (channels at resolution r are min(cbase / r, cmax))")
