"""Run by torchrun in test_train.py: a few DDP training steps, then each rank writes its weights' fingerprints.

With a second argument ``stop-rank-1``, rank 1 alone sends itself SIGINT once training is under way: both ranks
must then stop at the same step (a long run, so only the stop can end it)."""
from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

from model.network.checkpoint import fingerprint
from model.training.config import TrainConfig
from model.training.train import train


def main() -> None:
    out = Path(sys.argv[1])
    stop_rank_1 = sys.argv[2:] == ["stop-rank-1"]
    cfg = TrainConfig(resolution=16, batch=8, kimg=50 if stop_rank_1 else 0.032, channel_base=128, channel_max=16,
                      z_dim=16, w_dim=16, r1_interval=2, snap_kimg=1, grid_seeds=(0, 1), threads=1, ada_interval=1,
                      ada_kimg=1)

    def report(state) -> None:
        rank = int(os.environ.get("RANK", "0"))
        (out / f"rank{rank}.json").write_text(json.dumps({
            "G": fingerprint(state.G), "D": fingerprint(state.D), "G_ema": fingerprint(state.G_ema),
            "p": float(state.augment.p), "nimg": state.cur_nimg}))

    if stop_rank_1 and os.environ.get("RANK") == "1":
        # Ctrl-C as at a terminal, even when the suite itself runs as a background job (SIGINT ignored, which the
        # trainer respects).
        signal.signal(signal.SIGINT, signal.default_int_handler)
        threading.Thread(target=interrupt_when_training, daemon=True).start()
    train(cfg, out / "run", progress=False, on_finish=report)


def interrupt_when_training() -> None:
    while signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # the trainer has not taken over yet
        time.sleep(0.05)
    time.sleep(1.0)
    os.kill(os.getpid(), signal.SIGINT)


if __name__ == "__main__":
    main()
