"""Looks: the team's saved looks as a gallery; reopen one in Generate or delete it."""
from __future__ import annotations

import streamlit as st

from annotator import generate, services, ui
from db import queries as q
from db.engine import read_session, write_session
from core.errors import AtelierError

ctx = ui.context()
renderer = ui.renderer(ctx)
st.title("Looks")

with read_session(ctx.url) as session:
    looks = q.list_looks(session, ctx.model.id)
    directions = q.active_directions(session, ctx.model.id)
available = generate.sliders(directions, lambda d: services.direction_sigma(d, ctx.url))

if not looks:
    st.info("No saved looks yet. Design one on the Generate page and press Save look.")


def delete(look_id: int) -> None:
    try:
        with write_session(ctx.url) as session:
            q.delete_look(session, look_id)
        st.session_state["looks.flash"] = "Look deleted."
    except AtelierError as exc:
        st.session_state["looks.flash"] = ui.md(exc)


if st.session_state.get("looks.flash"):
    st.toast(st.session_state.pop("looks.flash"))

COLUMNS = 4
for row in range(0, len(looks), COLUMNS):
    for column, look in zip(st.columns(COLUMNS, gap="medium"), looks[row:row + COLUMNS]):
        with column, st.container(border=True):
            state, warnings = generate.look_from_saved(look, available)
            # Shown as saved, with the directions it was made with; today's sliders only when asked to.
            differences = generate.look_differences(look, available, ctx.model.fingerprint)
            try:
                st.image(generate.render_saved_jpeg(renderer, look, available, display=256), width="stretch")
            except AtelierError as exc:
                st.error(ui.md(exc))
            st.text(look.name)
            edits = ", ".join(f"{e.name} {e.value:+g}σ" for e in look.edits) or "no sliders moved"
            st.caption(f"seed {look.seed} · ψ {look.psi:g} · by {ui.md(look.reviewer)}")
            st.text(edits)
            for warning in warnings:
                st.caption(ui.md(warning))
            if differences:
                st.caption(ui.md("Shown as saved. Today's sliders differ: " + "; ".join(differences) + "."))
            with st.container(horizontal=True):
                label = "Re-apply today's sliders" if differences else "Open in Generate"
                if st.button(label, key=f"looks.open.{look.id}", icon=":material/open_in_new:",
                             help="Open in Generate with today's published sliders at the saved values."
                             if differences else "Open in Generate (today's sliders match this look)."):
                    st.switch_page(ui.page_path("generate"), query_params=generate.to_query(state))
                st.button("Delete", key=f"looks.delete.{look.id}", icon=":material/delete:", type="tertiary",
                          on_click=delete, args=(look.id,))
