"""Generate: design a look with the published directions as named sliders; the URL holds the look."""
from __future__ import annotations

import streamlit as st

from annotator import generate, imaging, services, ui
from db import queries as q
from db.engine import read_session
from core.errors import AtelierError

ctx = ui.context()
renderer = ui.renderer(ctx)
state = st.session_state

with read_session(ctx.url) as session:
    directions = q.active_directions(session, ctx.model.id)
available = generate.sliders(directions, lambda d: services.direction_sigma(d, ctx.url),
                             generate.conflict_marks(ctx.url, ctx.model.id))
groups = generate.grouped(available)


def slider_key(slider: generate.Slider) -> str:
    return f"gen.{slider.param}"


def load(look: generate.LookState) -> None:
    """Put a look into the widgets (from the URL, a saved look, or reset)."""
    state["gen.seed"] = "" if look.seed is None else str(look.seed)
    state["gen.psi"] = float(look.psi)
    if renderer.c_dim:
        state["gen.class"] = look.class_index or 0
    for slider in available:
        state[slider_key(slider)] = float(look.value(slider.id))


def current() -> tuple[generate.LookState, str | None]:
    seed, problem = generate.parse_seed(state.get("gen.seed"))
    values = tuple(sorted((s.id, float(state.get(slider_key(s), 0.0))) for s in available
                          if state.get(slider_key(s))))
    look = generate.LookState(seed=seed, psi=float(state.get("gen.psi", generate.DEFAULT_PSI)),
                              class_index=int(state.get("gen.class", 0)) if renderer.c_dim else None, values=values)
    return look, problem


# A link (or "Open in Generate" from Looks) sets the URL; load it when it is not what this page wrote last.
incoming = dict(st.query_params)
if incoming != state.get("gen.written") or "gen.seed" not in state:
    look, warnings = generate.parse_query(incoming, available, renderer.c_dim)
    load(look)
    state["gen.warnings"] = warnings
    state["gen.written"] = incoming


def randomise() -> None:
    state["gen.seed"] = str(generate.random_seed())


def reset() -> None:
    for slider in available:
        state[slider_key(slider)] = 0.0
    state["gen.psi"] = generate.DEFAULT_PSI


st.title("Generate")
for warning in state.pop("gen.warnings", []):
    st.warning(ui.md(warning))  # the warning quotes the link's own text
if not available:
    st.info(generate.GUIDANCE)


@st.fragment
def designer() -> None:
    controls, picture = st.columns([2, 3], gap="large")
    with controls:
        with st.container(horizontal=True, vertical_alignment="bottom"):
            st.text_input("Seed", key="gen.seed", placeholder="any whole number 0 … 4294967295", width=260)
            st.button("Random", icon=":material/casino:", on_click=randomise, key="gen.random")
        st.slider("Truncation ψ (lower = closer to the average look)", generate.PSI_RANGE[0], generate.PSI_RANGE[1],
                  step=0.05, key="gen.psi")
        if renderer.c_dim:
            st.selectbox("Class", list(range(renderer.c_dim)), key="gen.class")
        for category, members in groups.items():
            st.subheader(ui.md(category.capitalize()))
            for slider in members:
                low, high = slider.strength_range
                start, stop = slider.layer_range
                st.slider(ui.md(slider.name), float(low), float(high), step=0.1, key=slider_key(slider),
                          format="%+.1f σ", help=f"Layers {start}–{stop - 1}; range {low:g} … {high:g} σ")
                if slider.warning:
                    st.caption(ui.md(f"In conflict: {slider.warning}. The team has not settled this slider."),
                               help="Directions & export shows the conflict; settle it on the Review page.")
        if available:
            st.button("Reset sliders", icon=":material/restart_alt:", on_click=reset, key="gen.reset")

    look, problem = current()
    written = generate.to_query(look)
    if written != dict(st.query_params):
        st.query_params.from_dict(written)
    state["gen.written"] = dict(st.query_params)

    with picture:
        if problem:
            st.info(ui.md(problem))  # it quotes what was typed in the seed box
            return
        try:
            jpeg = generate.render_jpeg(renderer, look, available)
        except AtelierError as exc:
            st.error(ui.md(exc))
            return
        compare = bool(look.values) and st.toggle("Compare with the unedited look", key="gen.compare",
                                                  help="The same seed and ψ with every slider at 0, beside the edit.")
        if compare:
            before, after = st.columns(2)
            before.image(imaging.data_url(generate.render_jpeg(renderer, generate.unedited(look), available)),
                         caption="Unedited")
            after.image(imaging.data_url(jpeg), caption="Edited")
        else:
            st.image(imaging.data_url(jpeg), width=min(640, generate.DISPLAY_TARGET + 128))
        moved = ", ".join(f"{s.name} {look.value(s.id):+g}σ" for s in available if look.value(s.id))
        st.caption(f"Seed {look.seed} · ψ {look.psi:g}" + (f" · {ui.md(moved)}" if moved else "")
                   + f" · {renderer.resolution} px model")
        with st.container(horizontal=True, vertical_alignment="bottom"):
            st.download_button("Download PNG", data=generate.render_png(renderer, look, available),
                               file_name=f"atelier-seed{look.seed}.png", mime="image/png",
                               icon=":material/download:", key="gen.download", on_click="ignore")
        with st.form("gen.save", border=False, enter_to_submit=True, clear_on_submit=True):
            with st.container(horizontal=True, vertical_alignment="bottom"):
                st.text_input("Look name", key="gen.look_name", placeholder="e.g. long red coat")
                saved = st.form_submit_button("Save look", icon=":material/bookmark_add:")
        if saved:
            who = ui.reviewer()
            name_text = state.get("gen.look_name") or ""
            if not who:
                st.warning("Sign in with your name in the sidebar to save looks.")
            else:
                try:
                    info = generate.save(ctx.url, ctx.model.id, who, name_text, look, available)
                    st.success(f"Saved look “{ui.md(info.name)}”.")
                except AtelierError as exc:
                    st.error(ui.md(exc))


designer()
