"""Training runs as the app and the CLI see them: a run folder's config, log, snapshots, best generator and newest
sample grid, read without torch, and the command that continues the run.

A run folder is what ``atelier train`` writes (model.training.snapshots): ``config.json``, ``log.jsonl`` (one JSON
object per snapshot), ``network-snapshot-KKKKKK.safetensors`` with ``training-state-KKKKKK.pt``,
``samples-KKKKKK.png``, and once the per-snapshot Fréchet distance is on, ``network-best.safetensors`` with
``best.json``. The trainer may be writing while this reads, so a half-written last log line is skipped, not an error.
"""
from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import AtelierError
from core.settings import shown_path

SNAPSHOT = re.compile(r"network-snapshot-(\d{6})\.safetensors$")
SAMPLES = re.compile(r"samples-(\d{6})\.png$")

# TrainConfig field -> `atelier train` option, for the settings a resumed run takes from its command line.
RESUME_OPTIONS = (("data", "--data"), ("resolution", "--resolution"), ("batch", "--batch"),
                  ("channel_base", "--cbase"), ("channel_max", "--cmax"), ("map_layers", "--map"),
                  ("gamma", "--gamma"), ("glr", "--lr"), ("pl_weight", "--pl-weight"), ("augment", "--aug"),
                  ("augpipe", "--augpipe"), ("ada_target", "--target"), ("ada_kimg", "--ada-kimg"),
                  ("style_mixing", "--mixing"),
                  ("mbstd_group", "--mbstd-group"), ("mbstd_channels", "--mbstd-channels"),
                  ("num_fp16_res", "--fp16-res"), ("cpu_bf16_res", "--bf16-res"), ("kimg", "--kimg"),
                  ("snap_kimg", "--snap-kimg"), ("snap_minutes", "--snap-minutes"),
                  ("quality_samples", "--quality-samples"))


@dataclass
class RunSummary:
    path: Path
    config: dict = field(default_factory=dict)
    log: list[dict] = field(default_factory=list)
    snapshots: list[tuple[float, Path]] = field(default_factory=list)  # (kimg, network file), oldest first
    best: dict | None = None  # best.json: kimg and Fréchet distance of network-best.safetensors
    samples: Path | None = None  # newest sample grid
    modified: float = 0.0  # newest change in the folder (seconds since the epoch)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def kimg(self) -> float:
        """How far the run has got: its newest log entry (or snapshot, if the log is missing)."""
        if self.log:
            return float(self.log[-1].get("kimg", 0.0))
        return self.snapshots[-1][0] if self.snapshots else 0.0

    @property
    def target_kimg(self) -> float | None:
        value = self.config.get("kimg")
        return float(value) if value is not None else None

    @property
    def samples_kimg(self) -> int | None:
        """The (whole) kimg of the newest sample grid, from its file name."""
        match = SAMPLES.search(self.samples.name) if self.samples is not None else None
        return int(match.group(1)) if match else None

    @property
    def best_path(self) -> Path | None:
        path = self.path / "network-best.safetensors"
        return path if self.best is not None and path.exists() else None

    def series(self, key: str) -> list[tuple[float, float]]:
        """(kimg, value) for every log entry that has `key`: what a chart of the run draws."""
        return [(float(e["kimg"]), float(e[key])) for e in self.log
                if isinstance(e.get(key), (int, float)) and not isinstance(e.get(key), bool) and "kimg" in e]


def read_log(path: Path) -> list[dict]:
    """log.jsonl entries in order; a line that is not (yet) a whole JSON object is skipped."""
    entries = []
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return []
    for line in text.splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(entry, dict):
            entries.append(entry)
    return entries


def _read_json(path: Path) -> dict | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def is_run(path: Path) -> bool:
    return path.is_dir() and ((path / "log.jsonl").exists() or (path / "config.json").exists())


def read_run(path: str | Path) -> RunSummary:
    path = Path(path).expanduser()
    if not path.is_dir():
        raise AtelierError(f"{path} is not a folder; give a run folder that `atelier train` wrote (it holds "
                           f"config.json and log.jsonl)")
    if not is_run(path):
        raise AtelierError(f"{path} is not a training run: it has neither config.json nor log.jsonl")
    snapshots, samples, modified = [], [], 0.0
    for child in path.iterdir():
        try:
            modified = max(modified, child.stat().st_mtime)
        except FileNotFoundError:  # pruned by the trainer while we looked
            continue
        if match := SNAPSHOT.search(child.name):
            if (path / f"training-state-{match.group(1)}.pt").exists():
                snapshots.append((int(match.group(1)), child))
        elif match := SAMPLES.search(child.name):
            samples.append((int(match.group(1)), child))
    return RunSummary(path=path, config=_read_json(path / "config.json") or {}, log=read_log(path / "log.jsonl"),
                      snapshots=[(float(k), p) for k, p in sorted(snapshots)], best=_read_json(path / "best.json"),
                      samples=max(samples)[1] if samples else None, modified=modified)


def list_runs(root: str | Path) -> list[RunSummary]:
    """The run folders directly under `root`, most recently changed first."""
    root = Path(root).expanduser()
    if not root.is_dir():
        return []
    runs = [read_run(child) for child in root.iterdir() if is_run(child)]
    return sorted(runs, key=lambda run: run.modified, reverse=True)


def _option_value(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def shell_path(path: Path) -> str:
    """A path for a shell command line: `~/…` under the home folder (the tilde left unquoted so the shell
    expands it), quoted where it needs to be."""
    shown = shown_path(path)
    if shown.startswith("~/"):
        return "~/" + shlex.quote(shown[2:])
    return shlex.quote(shown)


def resume_command(run: RunSummary) -> str:
    """The `atelier train` command that continues this run with its own settings (a resumed run takes the
    command's learning rate, augmentation and the rest, so they are all spelled out)."""
    options: list[str] = []
    for key, option in RESUME_OPTIONS:
        if key in run.config and run.config[key] is not None:
            options += [option, _option_value(run.config[key])]
    if run.config.get("augment") == "fixed" and run.config.get("augment_p") is not None:
        options += ["--p", _option_value(run.config["augment_p"])]
    if run.config.get("conditional"):
        options.append("--cond")
    threads = run.config.get("threads")
    if threads:
        options += ["--threads", str(threads)]
    target, copy = _writable_copy(run.path)
    head = "atelier train --resume auto --outdir " + shell_path(target)
    command = f"{head} {shlex.join(options)}" if options else head
    if copy:
        # A run that ships with the checkout is continued in a copy, so training never writes into the repository.
        command = f"mkdir -p {shell_path(target)} && cp -R {shell_path(run.path)}/. {shell_path(target)}/ && {command}"
    return command


def _writable_copy(path: Path) -> tuple[Path, bool]:
    """Where a run continues: in place, or for a run inside the checkout (``runs/``), a copy in the runs folder."""
    from core.settings import runs_dir, shipped_runs_dir

    shipped = shipped_runs_dir()
    resolved = Path(path).resolve()
    if shipped is not None and resolved.is_relative_to(shipped.resolve()):
        return runs_dir() / resolved.name, True
    return Path(path), False


def run_record(run: RunSummary) -> dict:
    """A run as plain JSON-able data (`atelier runs --json`)."""
    last = run.log[-1] if run.log else {}
    return {"name": run.name, "path": str(run.path), "kimg": run.kimg, "target_kimg": run.target_kimg,
            "best": ({"kimg": run.best.get("kimg"), "frechet": run.best.get("frechet"), "path": str(run.best_path)}
                     if run.best_path else None),
            "newest_snapshot": str(run.snapshots[-1][1]) if run.snapshots else None,
            "samples": str(run.samples) if run.samples else None,
            "images_per_s": last.get("images_per_s"), "augment_p": last.get("augment_p"),
            "stopped": bool(last.get("stopped", False)), "resume_command": resume_command(run)}


def snapshot_rows(run: RunSummary) -> list[dict]:
    """Newest first: kimg, file name and size of each snapshot still on disk (the trainer prunes old ones, maybe while
    this reads)."""
    rows = []
    for kimg, path in reversed(run.snapshots):
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            continue
        rows.append({"kimg": int(kimg), "file": path.name, "MB": round(size / 1e6, 1)})
    return rows
