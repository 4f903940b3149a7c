"""Training: follow a run (progress, losses, augmentation, Fréchet distance, newest samples) and use its generator."""
from __future__ import annotations

import time

import pandas as pd
import streamlit as st

from workflows import registry
from annotator import access, imaging, ui
from core.errors import AtelierError
from model.training.runs import RunSummary, list_runs, read_run, resume_command, snapshot_rows
from core.settings import runs_dir, shipped_runs_dir, shown_path

ctx = ui.context()
st.title("Training")

root = runs_dir()
shipped = shipped_runs_dir()
# Your runs first, then the ones that come with the checkout (the demo model's own run) unless you continued one
# (its copy in your runs folder has the same name and is the newer state).
runs = list_runs(root)
runs += [r for r in (list_runs(shipped) if shipped else []) if r.name not in {x.name for x in runs}]


def ago(seconds: float) -> str:
    minutes = int((time.time() - seconds) // 60)
    return "just now" if minutes < 1 else f"{minutes} min ago" if minutes < 120 else f"{minutes // 60} h ago"


def describe(run: RunSummary) -> str:
    target = f" of {run.target_kimg:g}" if run.target_kimg else ""
    return f"{run.name} · {run.kimg:g}{target} kimg · changed {ago(run.modified)}"


run: RunSummary | None = None
pick, elsewhere = st.columns([3, 2])
with elsewhere:
    other = st.text_input("…or another run folder", key="tr.folder", placeholder=shown_path(root / "my-run"),
                          help=f"The list shows the runs under {shown_path(root)}; a run anywhere else can be read "
                               "here.")
with pick:
    if runs:
        names = [r.name for r in runs]
        chosen = st.selectbox("Run", names, key="tr.run", format_func=lambda n: describe(runs[names.index(n)]),
                              disabled=bool(other.strip()))
        run = runs[names.index(chosen)]
    else:
        st.info(f"No training runs in {shown_path(root)} yet. Start one with `atelier train --data "
                f"your-images.zip` (or `--data synthetic` for the demo stream); it appears here with its first "
                f"snapshot.")
if other.strip():
    try:
        run = read_run(access.server_path(other, team=ui.team(), kind="folder"))
    except AtelierError as exc:
        run = None
        st.error(ui.md(exc))


def show(run: RunSummary) -> None:
    try:
        run = read_run(run.path)  # fresh on every refresh: the trainer may have written since
    except AtelierError as exc:  # the folder went away while the page followed it
        st.error(ui.md(exc))
        return
    last = run.log[-1] if run.log else {}
    a, b, c, d = st.columns(4)
    a.metric("Progress", f"{run.kimg:g} kimg", help="Thousands of real images shown to the discriminator.")
    b.metric("Speed", f"{last['images_per_s']:g} img/s" if "images_per_s" in last else "—",
             help=f"{last['sec_per_kimg']:g} s per kimg" if "sec_per_kimg" in last else None)
    c.metric("Augmentation p", f"{last['augment_p']:.3f}" if "augment_p" in last else "—",
             help="ADA's augmentation probability: it rises when the discriminator starts to overfit.")
    d.metric("Best Fréchet", f"{run.best['frechet']:.1f}" if run.best else "—",
             help="Lower is better; the trainer keeps the generator of the best snapshot as network-best.")
    if run.target_kimg:
        st.progress(min(run.kimg / run.target_kimg, 1.0),
                    text=f"{run.kimg:g} of {run.target_kimg:g} kimg" + (" · stopped by request" if last.get("stopped")
                                                                       else ""))
    if run.best:
        st.caption(f"Best snapshot so far: {run.best.get('kimg', 0):g} kimg (Fréchet {run.best['frechet']:.1f}).")

    charts = {"Losses": ["loss_G", "loss_D"], "Fréchet distance (lower is better)": ["frechet"],
              "Augmentation p": ["augment_p"]}
    columns = st.columns(len(charts))
    for column, (title, keys) in zip(columns, charts.items()):
        with column:
            st.caption(title)
            frame = pd.DataFrame({key: dict(run.series(key)) for key in keys})
            if frame.empty:
                st.caption("Not logged yet.")
            else:
                st.line_chart(frame.sort_index(), height=200, x_label="kimg")

    left, right = st.columns([3, 2])
    with left:
        if run.samples is not None:
            st.image(imaging.data_url(run.samples.read_bytes()),
                     caption=f"Newest samples ({run.samples_kimg} kimg, the same "
                             f"seeds at every snapshot)")
        else:
            st.caption("No sample grid yet: the trainer writes one with every snapshot.")
    with right:
        st.caption("Continue this run (a resumed run is the same run: weights, optimisers, p and RNG)")
        st.code(resume_command(run), language="bash", wrap_lines=True)
        rows = snapshot_rows(run)
        if rows:
            st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
        register_buttons(run)


def register_buttons(run: RunSummary) -> None:
    with st.container(horizontal=True):
        best = st.button("Use the best generator", icon=":material/star:", key="tr.best", type="primary",
                         disabled=run.best_path is None,
                         help="Registers a copy of network-best.safetensors as a model (Models page).")
        newest = st.button("Use the newest snapshot", key="tr.newest", disabled=not run.snapshots)
    if (best or newest) and not ui.is_admin():
        st.warning("Only an admin may register models.")
    elif best or newest:
        try:
            with st.spinner("Copying and checking the generator…"):
                info = registry.register_run_generator(run.path, "best" if best else "newest", ctx.url)
            st.success(f"Registered {ui.md(info.name)}. Choose it as the active model on the Models page.")
        except AtelierError as exc:
            st.error(ui.md(exc))


if run is not None:
    follow = st.toggle("Follow this run (refresh every 30 s)", key="tr.follow")
    st.fragment(run_every=30 if follow else None)(show)(run)
