"""Run by torchrun in test_train.py: a few DDP training steps, then each rank writes its weights' fingerprints."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from model.checkpoint import fingerprint
from model.train import TrainConfig, train


def main() -> None:
    out = Path(sys.argv[1])
    cfg = TrainConfig(resolution=16, batch=8, kimg=0.032, channel_base=128, channel_max=16, z_dim=16, w_dim=16,
                      r1_interval=2, snap_kimg=1, grid_seeds=(0, 1), threads=1, ada_interval=1, ada_kimg=1)

    def report(state) -> None:
        rank = int(os.environ.get("RANK", "0"))
        (out / f"rank{rank}.json").write_text(json.dumps({
            "G": fingerprint(state.G), "D": fingerprint(state.D), "G_ema": fingerprint(state.G_ema),
            "p": float(state.augment.p), "nimg": state.cur_nimg}))

    train(cfg, out / "run", progress=False, on_finish=report)


if __name__ == "__main__":
    main()
