"""Bad input on the command line: every `atelier` command answers with a message, exit code 1 (or Click's 2 for a
usage error) and no traceback.

The command tree is discovered from the Typer app, so a command added later is swept too. Two sweeps run over
every command: each number option given NaN and infinity, and every path parameter pointed under a file (so
nothing can be read or written there). Then the cases a hostile tester found, one by one.
"""
from __future__ import annotations

import inspect
import json
import os
import typing
from pathlib import Path

import pytest
from conftest import assert_clean_user_error
from typer.testing import CliRunner

from cli.main import app

runner = CliRunner()


def _commands(typer_app=app, prefix: tuple[str, ...] = ()):
    for info in typer_app.registered_commands:
        yield prefix + (info.name or info.callback.__name__.replace("_", "-"),), info.callback
    for group in typer_app.registered_groups:
        yield from _commands(group.typer_instance, prefix + (group.name,))


COMMANDS = dict(_commands())


def _base_type(hint):
    if typing.get_origin(hint) is typing.Union:
        return next(arg for arg in typing.get_args(hint) if arg is not type(None))
    return hint


def _parameters(callback) -> list[tuple[str, type, inspect.Parameter]]:
    fn = inspect.unwrap(callback)
    hints = typing.get_type_hints(fn)
    return [(name, _base_type(hints.get(name)), p) for name, p in inspect.signature(fn).parameters.items()]


def _is_argument(parameter: inspect.Parameter) -> bool:
    return type(parameter.default).__name__ == "ArgumentInfo"


def _flag(name: str, parameter: inspect.Parameter) -> str:
    decls = [d for d in getattr(parameter.default, "param_decls", None) or () if d.startswith("--")]
    return decls[0].split("/")[0] if decls else "--" + name.replace("_", "-")


def _command_line(path: tuple[str, ...], values: dict[str, str]) -> list[str]:
    """The command with `values` for the named parameters and a placeholder for every other required one."""
    line = list(path)
    for name, kind, parameter in _parameters(COMMANDS[path]):
        value = values.get(name)
        if value is None and getattr(parameter.default, "default", None) is ...:
            value = {int: "1", float: "1"}.get(kind, "placeholder")
        if value is not None:
            line += [value] if _is_argument(parameter) else [_flag(name, parameter), value]
    return line


def test_the_sweep_sees_the_whole_command_tree():
    for expected in [("generate",), ("train",), ("discover",), ("strip",), ("import",), ("export",), ("app",),
                     ("bench", "render"), ("bench", "train"), ("factors", "train"), ("db", "upgrade"), ("scrape",)]:
        assert expected in COMMANDS, expected
    assert len(COMMANDS) >= 25


def test_every_command_is_guarded():
    """The CLI entry point wraps every command, so a new one cannot forget to turn user errors into messages."""
    unguarded = [" ".join(path) for path, callback in COMMANDS.items() if not getattr(callback, "_atelier_guarded",
                                                                                         False)]
    assert unguarded == []


FLOAT_OPTIONS = [(path, name) for path, callback in COMMANDS.items()
                 for name, kind, _ in _parameters(callback) if kind is float]


def test_there_are_number_options_to_sweep():
    assert len(FLOAT_OPTIONS) >= 15 and (("generate",), "trunc") in FLOAT_OPTIONS


@pytest.mark.parametrize("path, name", FLOAT_OPTIONS, ids=[f"{' '.join(p)}:{n}" for p, n in FLOAT_OPTIONS])
@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_every_number_option_refuses_nan_and_infinity(path, name, value):
    parameter = dict((n, p) for n, _, p in _parameters(COMMANDS[path]))[name]
    result = runner.invoke(app, _command_line(path, {name: value}))
    assert_clean_user_error(result, f"{_flag(name, parameter)} {float(value)}: give a finite number")


SEED_OPTIONS = [path for path, callback in COMMANDS.items()
                for name, kind, _ in _parameters(callback) if name == "seed" and kind is int]


@pytest.mark.parametrize("path", SEED_OPTIONS, ids=[" ".join(p) for p in SEED_OPTIONS])
@pytest.mark.parametrize("value", ["-5", str(2 ** 32)])
def test_every_seed_option_is_in_numpys_range(path, value):
    assert len(SEED_OPTIONS) >= 3
    result = runner.invoke(app, _command_line(path, {"seed": value}))
    assert_clean_user_error(result, f"--seed {value}: a seed is a whole number from 0 to 4294967295")


PATH_COMMANDS = [path for path, callback in COMMANDS.items() if any(kind is Path for _, kind, _ in
                                                                     _parameters(callback))]


@pytest.mark.parametrize("path", PATH_COMMANDS, ids=[" ".join(p) for p in PATH_COMMANDS])
def test_every_path_under_a_file_is_a_message(tmp_path, path):
    """Every Path parameter of the command points below a regular file: nothing can be read or written there."""
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    values = {name: str(blocker / "sub" / ("out.safetensors" if name == "dst" else "x.png"))
              for name, kind, _ in _parameters(COMMANDS[path]) if kind is Path}
    if path == ("scrape",):
        values["profile"] = str(blocker / "sub" / "profile.toml")  # never reaches for a site
    result = runner.invoke(app, _command_line(path, values))
    assert_clean_user_error(result)
    assert result.output.lower().startswith("error"), result.output  # one message, nothing before it


# ---- the cases from the security pass --------------------------------------------------------------------------

def test_output_folder_that_is_a_file(tmp_path):
    blocker = tmp_path / "out"
    blocker.write_text("x")
    result = runner.invoke(app, ["generate", "--seeds", "0", "--outdir", str(blocker)])
    assert_clean_user_error(result, f"--outdir {blocker} is a file; give a folder instead")


def test_output_file_that_is_a_folder(tmp_path, reference_dir):
    folder = tmp_path / "dir.safetensors"
    folder.mkdir()
    result = runner.invoke(app, ["convert", str(reference_dir / "sg2ada_tiny32.pkl"), str(folder)])
    assert_clean_user_error(result, f"the output {folder} is a folder")


def test_output_in_a_folder_without_write_permission(tmp_path, reference_dir):
    if os.geteuid() == 0:
        # Root writes anywhere a mode allows, so a chmod-ed folder proves nothing; the kernel's sysfs refuses new
        # files even to root (permission denied, or read-only where a container mounts it so).
        result = runner.invoke(app, ["convert", str(reference_dir / "sg2ada_tiny32.pkl"), "/sys/x.safetensors"])
        assert_clean_user_error(result, "/sys/")
        assert "permission denied for" in result.output or "Read-only file system" in result.output, result.output
        assert not any(p.name.endswith(".tmp") for p in Path("/sys").iterdir())
        return
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        result = runner.invoke(app, ["convert", str(reference_dir / "sg2ada_tiny32.pkl"),
                                     str(locked / "x.safetensors")])
        assert_clean_user_error(result, "no permission to write in")
    finally:
        locked.chmod(0o700)


def test_a_write_error_during_the_command_is_a_message(tmp_path):
    """The central handler turns file-system errors raised deep inside a command into a message naming the path."""
    from core.errors import os_error_message

    for exc, phrase in [(IsADirectoryError(21, "Is a directory", "/x/out"), "/x/out is a folder"),
                        (NotADirectoryError(20, "Not a directory", "/x/f/out"), "part of that path is a file"),
                        (PermissionError(13, "Permission denied", "/root/x"), "permission denied for /root/x"),
                        (OSError(28, "No space left on device", "/x/big"), "no space left on the disk")]:
        assert phrase in os_error_message(exc)


def test_malformed_safetensors_metadata_on_the_cli(tmp_path, reference_dir):
    from safetensors.torch import load_file, save_file

    from model.network.checkpoint import convert, read_safetensors_metadata

    good = convert(reference_dir / "sg2ada_tiny32.pkl", tmp_path / "good.safetensors", generator_only=True)
    meta = {**read_safetensors_metadata(good), "architecture": "{\"G_ema\": {\"z_dim\": "}
    bad = tmp_path / "bad.safetensors"
    save_file(load_file(str(good)), str(bad), metadata=meta)
    assert_clean_user_error(runner.invoke(app, ["info", str(bad)]), "'architecture' entry of its metadata")


@pytest.mark.parametrize("shape, phrase", [((-1, -512), "cannot be negative"), ((-1, 512), "cannot be negative"),
                                           ((2 ** 32, 2 ** 32), "declares shape")])
def test_npy_header_with_a_negative_or_huge_shape(tmp_path, reference_dir, shape, phrase):
    header = repr({"descr": "<f4", "fortran_order": False, "shape": shape}).encode()
    header += b" " * (118 - len(header)) + b"\n"
    path = tmp_path / "boundary.npy"
    path.write_bytes(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + b"\0" * 2048)
    result = runner.invoke(app, ["import", str(path), "--database", f"sqlite:///{tmp_path / 'a.db'}", "--network",
                                 str(reference_dir / "sg2ada_tiny32.pkl"), "--yes"])
    assert result.exit_code == 1 and phrase in result.output, result.output
    assert not isinstance(result.exception, (ValueError, OverflowError)), result.exception


@pytest.mark.parametrize("command", [["generate", "--seeds", "0"], ["train", "--kimg", "1"],
                                     ["bench", "render", "--batches", "1"]])
def test_unknown_device(command):
    assert_clean_user_error(runner.invoke(app, command + ["--device", "bogus"]), "device 'bogus' is not one")


def test_train_kimg_and_gamma_nan(tmp_path):
    for option in ("--kimg", "--gamma", "--lr", "--p"):
        result = runner.invoke(app, ["train", "--outdir", str(tmp_path / "run"), option, "nan"])
        assert_clean_user_error(result, f"{option} nan: give a finite number")
    assert not (tmp_path / "run").exists()  # nothing half-written, no config.json with NaN in it


@pytest.mark.parametrize("args, phrase", [
    (["--cmax", "65536"], "--cmax 65536: use 1 to 2048"), (["--map", "20000"], "--map 20000: use 1 to 32"),
    (["--resolution", "48"], "--resolution 48: use a power of two"), (["--cbase", "8"], "--cbase 8: use 64"),
    (["--gamma", "-1"], "--gamma and --pl-weight are weights"), (["--mixing", "2"], "--mixing 2.0: give a probability"),
])
def test_train_architecture_options_are_bounded(tmp_path, args, phrase):
    result = runner.invoke(app, ["train", "--outdir", str(tmp_path / "run")] + args)
    assert_clean_user_error(result, phrase)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("value", ["0", "-5"])
def test_bench_render_repeats(value):
    result = runner.invoke(app, ["bench", "render", "--batches", "1", "--repeats", value])
    assert_clean_user_error(result, f"--repeats {value}: time each row at least once")


@pytest.mark.parametrize("command, phrase", [
    (["bench", "discovery", "--pca-samples", "0"], "PCA needs at least 2 samples, not 0"),
    (["bench", "discovery", "--pca-samples", "-5"], "PCA needs at least 2 samples, not -5"),
    (["discover", "--method", "pca", "--samples", "1"], "PCA needs at least 2 samples, not 1"),
    (["bench", "train", "--threads", "-5"], "--threads -5: give 0"),
    (["train", "--threads", "-5"], "--threads -5: give 0"),
    (["train", "--data", " "], "--data is empty"),
    (["db", "upgrade", ""], "the revision is empty"),
    (["bench", "app", "--reviews", "0"], "time at least one of each"),
    (["bench", "app", "--moves", "-5"], "time at least one of each"),
])
def test_counts_below_what_the_work_needs(command, phrase):
    assert_clean_user_error(runner.invoke(app, command), phrase)


def test_train_channel_base_below_the_datasets_resolution(tmp_path):
    data = tmp_path / "data"
    assert runner.invoke(app, ["synth", "--out", str(data), "--count", "4", "--resolution", "32"]).exit_code == 0
    result = runner.invoke(app, ["train", "--data", str(data), "--cbase", "16", "--outdir", str(tmp_path / "run")])
    assert_clean_user_error(result, "--cbase 16 is below the data's resolution (32 px)")
    assert not (tmp_path / "run").exists()


def test_discover_negative_samples():
    assert_clean_user_error(runner.invoke(app, ["discover", "--samples", "-5"]), "at least 1")


@pytest.mark.parametrize("method", ["sefa", "pca", "kmeans"])
def test_discover_zero_samples_is_refused_not_the_default(method):
    """0 used to mean "the default" (100,000 samples for PCA) without a word; it is a count, and too few."""
    assert_clean_user_error(runner.invoke(app, ["discover", "--method", method, "--samples", "0"]), "--samples 0")


def test_generate_truncation_and_cutoff(tmp_path):
    for args, phrase in [(["--trunc", "nan"], "--trunc nan: give a finite number"),
                         (["--trunc", "inf"], "--trunc inf: give a finite number"),
                         (["--trunc", "1e300"], "--trunc 1e+300: use a value between -10 and 10"),
                         (["--cutoff", "-1"], "--cutoff -1: this model has"),
                         (["--cutoff", "0"], "--cutoff 0: this model has"),
                         (["--cutoff", "999"], "--cutoff 999: this model has")]:
        result = runner.invoke(app, ["generate", "--seeds", "0", "--outdir", str(tmp_path / "out")] + args)
        assert_clean_user_error(result, phrase)
        assert not list((tmp_path / "out").glob("*.png")) if (tmp_path / "out").exists() else True


def test_seed_ranges_cannot_add_up_past_the_limit():
    from core.errors import AtelierError
    from model.network.render import MAX_SEEDS, parse_seeds

    many = ",".join(f"{i * 100_001}-{i * 100_001 + 100_000}" for i in range(10_000))
    with pytest.raises(AtelierError, match="more than 100,000 seeds"):
        parse_seeds(many)
    with pytest.raises(AtelierError, match="more than 100,000 seeds in all"):
        parse_seeds("0-59999,100000-159999")
    assert len(parse_seeds(f"0-{MAX_SEEDS - 1}")) == MAX_SEEDS
    result = runner.invoke(app, ["generate", "--seeds", "0-59999,100000-159999"])
    assert_clean_user_error(result, "in all")


def test_strip_size_is_bounded():
    from core.errors import AtelierError
    from model.directions.strips import MAX_STEPS, StripSpec, sigma_steps

    for steps, span in [(1_000_000, 3.0), (1, 3.0), (7, float("nan")), (7, 0.0), (7, 1e9)]:
        with pytest.raises(AtelierError):
            sigma_steps(steps, span)
    assert len(sigma_steps(MAX_STEPS, 3.0)) == MAX_STEPS
    with pytest.raises(AtelierError, match="1 to 64 seeds"):
        StripSpec("s", 0, tuple(range(100_000)), sigma_steps(7, 3.0))


def test_strip_steps_on_the_cli(tmp_path):
    result = runner.invoke(app, ["strip", "--set", "1", "--component", "0", "--steps", "1000000",
                                 "--out", str(tmp_path / "s.png")])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output


# ---- import --network and refused files leave nothing behind ---------------------------------------------------

def _models(url: str) -> list:
    from db import queries
    from db.engine import read_session

    with read_session(url) as session:
        return queries.list_models(session)


def test_refused_import_does_not_register_its_network(tmp_path, reference_dir):
    import numpy as np

    url = f"sqlite:///{tmp_path / 'team.db'}"
    wrong = tmp_path / "boundary.npy"
    np.save(wrong, np.ones((1, 7), dtype=np.float32))  # 7 dimensions: the network's w has 512
    network = str(reference_dir / "sg2ada_tiny32.pkl")
    result = runner.invoke(app, ["import", str(wrong), "--database", url, "--network", network, "--yes"])
    assert result.exit_code == 1 and "nothing was written" in result.output, result.output
    assert _models(url) == []
    result = runner.invoke(app, ["import", str(tmp_path / "missing.npy"), "--database", url, "--network", network])
    assert result.exit_code == 1 and _models(url) == []
    right = tmp_path / "right.npy"
    np.save(right, np.ones((1, 512), dtype=np.float32))
    result = runner.invoke(app, ["import", str(right), "--database", url, "--network", network, "--dry-run"])
    assert result.exit_code == 0 and "dry run" in result.output, result.output
    assert _models(url) == []  # a dry run writes nothing, not even the model
    result = runner.invoke(app, ["import", str(right), "--database", url, "--network", network, "--yes"])
    assert result.exit_code == 0, result.output
    assert [m.name for m in _models(url)] == ["sg2ada_tiny32"] and "registered model" in result.output


def test_refused_upload_is_not_kept(tmp_path, reference_dir):
    from workflows import registry
    from core.errors import AtelierError
    from core.settings import atelier_home

    url = f"sqlite:///{tmp_path / 'app.db'}"
    from db.migrate import ensure_current

    ensure_current(url)
    uploads = atelier_home() / "uploads"
    crafted = (reference_dir / "sg2ada_tiny32.pkl").read_bytes()[:50_000]
    with pytest.raises(AtelierError):
        registry.register_upload("network-snapshot.pkl", crafted, None, url)
    assert not uploads.exists() or list(uploads.iterdir()) == []
    good = (reference_dir / "sg2ada_tiny32.pkl").read_bytes()
    info = registry.register_upload("network-snapshot.pkl", good, "tiny", url)
    assert info.name == "tiny" and len(list(uploads.iterdir())) == 1


# ---- the app never shows a server traceback to a team ---------------------------------------------------------

def test_served_app_hides_error_details(monkeypatch):
    from cli.app_commands import streamlit_command

    def details(host: str) -> str:
        command = streamlit_command(8501, host)
        return command[command.index("--client.showErrorDetails") + 1]

    monkeypatch.delenv("ATELIER_TEAM", raising=False)
    assert (details("0.0.0.0"), details("192.168.1.5"), details("127.0.0.1")) == ("none", "none", "full")
    monkeypatch.setenv("ATELIER_TEAM", "1")  # a team behind a reverse proxy on loopback
    assert details("127.0.0.1") == "none"


def _failing_page_script(served_to_team: bool, error: str) -> None:
    from annotator.page_errors import run_page
    from core.errors import AtelierError

    class Page:
        title = "failing"

        def run(self):
            if error == "user":
                raise AtelierError("the file is not a network [click](https://example.invalid)")
            raise RuntimeError("/srv/atelier/secret/path.py line 12 exploded")

    run_page(Page(), served_to_team)


def _run_script(served_to_team: bool, error: str):
    from streamlit.testing.v1 import AppTest

    return AppTest.from_function(_failing_page_script, args=(served_to_team, error), default_timeout=60).run()


def test_a_failing_page_shows_a_plain_message_to_a_team():
    from annotator.page_errors import SERVER_ERROR

    at = _run_script(True, "crash")
    assert not at.exception
    assert [e.value for e in at.error] == [SERVER_ERROR]
    assert "/srv/atelier" not in json.dumps([e.value for e in at.error])


def test_a_user_error_is_shown_as_its_message_and_as_text():
    at = _run_script(True, "user")
    assert not at.exception
    (shown,) = [e.value for e in at.error]
    assert shown.startswith("the file is not a network") and "click" in shown
    assert "[click](" not in shown  # escaped by annotator.ui.md: shown as text, never as a link


def test_local_app_keeps_the_traceback_for_the_developer():
    at = _run_script(False, "crash")
    assert at.exception and "exploded" in at.exception[0].message
