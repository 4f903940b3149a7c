"""The processes of one training run: ranks under ``torchrun`` (DistributedDataParallel, gloo on CPU / nccl on GPU),
what they share each step, and a Ctrl-C or SIGTERM that stops them all at the same step.

With one process every helper here is a plain pass-through, so single-process training never touches
torch.distributed.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
from dataclasses import dataclass

import torch


@dataclass
class Distributed:
    rank: int = 0
    world: int = 1

    @property
    def active(self) -> bool:
        return self.world > 1


def init_distributed(device_kind: str) -> Distributed:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Distributed()
    import torch.distributed as dist
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_kind == "cuda" else "gloo")
    return Distributed(rank=dist.get_rank(), world=dist.get_world_size())


def process_device(requested: str) -> tuple[torch.device, Distributed]:
    """This process's device and rank: under torchrun each rank takes the GPU its LOCAL_RANK names."""
    from model.network.render import pick_device

    device = pick_device(requested)
    dist_info = init_distributed(device.type)
    if device.type == "cuda" and dist_info.active:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    return device, dist_info


def wrap_for_ranks(module: torch.nn.Module, dist_info: Distributed, device: torch.device) -> torch.nn.Module:
    """The module as the loss calls it: under torchrun a DDP wrapper that averages its gradients across ranks."""
    if not dist_info.active:
        return module
    from torch.nn.parallel import DistributedDataParallel as DDP

    ids = [device.index] if device.type == "cuda" else None
    return DDP(module, device_ids=ids, broadcast_buffers=False)


def mean_over_ranks(value: torch.Tensor, dist_info: Distributed) -> torch.Tensor:
    """`value` averaged in place over all processes (each rank sees different latents)."""
    if dist_info.active:
        import torch.distributed as dist
        dist.all_reduce(value)
        value /= dist_info.world
    return value


def signs_from_all_ranks(logits: torch.Tensor, dist_info: Distributed) -> torch.Tensor:
    """What ADA measures, from every rank: each rank's logits' signs, gathered so all ranks adjust p alike."""
    if not dist_info.active:
        return logits
    import torch.distributed as dist

    signs = logits.sign()
    gathered = [torch.zeros_like(signs) for _ in range(dist_info.world)]
    dist.all_gather(gathered, signs)
    return torch.cat(gathered)


def barrier(dist_info: Distributed) -> None:
    if dist_info.active:
        import torch.distributed as dist
        dist.barrier()


class StopRequest:
    """Turns the first Ctrl-C or SIGTERM into a request the training loop honours after its current step (it then
    writes a snapshot and returns). The previous handlers come back at once, so a second signal stops the process
    as it always would. Signal handlers can only be set from the main thread; elsewhere this never fires."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, object] = {}

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                # A signal ignored on entry stays ignored: a shell starts its background jobs with SIGINT ignored
                # so that a Ctrl-C meant for the foreground does not reach them.
                if signal.getsignal(sig) is not signal.SIG_IGN:
                    self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        self._restore()

    def _restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def _handle(self, signum: int, frame) -> None:
        self.requested = True
        self._restore()
        print(f"\n{signal.Signals(signum).name}: finishing this step and writing a snapshot; send it again to quit "
              f"at once (and lose the work since the last snapshot)", file=sys.stderr, flush=True)


def stop_agreed(stop: StopRequest, dist_info: Distributed, device: torch.device) -> bool:
    """Whether to stop now. Under torchrun every rank must leave the loop at the same step (a rank that left alone
    would hang the others in their next all-reduce), so one rank's request is shared with all."""
    if not dist_info.active:
        return stop.requested
    import torch.distributed as dist

    flag = torch.tensor([1.0 if stop.requested else 0.0], device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item())
