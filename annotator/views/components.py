"""Components: all components with status, label, category, scores; filter, sort, open one, reject dead ones."""
from __future__ import annotations

import streamlit as st

from annotator import tables, ui

ctx = ui.context()
cset = ui.require_set(ctx)
st.title("Components")
frame = tables.components_frame(ctx.url, cset.id)

with st.container(horizontal=True, vertical_alignment="bottom"):
    statuses = st.multiselect("Status", sorted(frame["status"].unique()), key="cmp.status", width=320)
    cats = st.multiselect("Category", ui.categories(ctx.url), key="cmp.category", width=320)
    text = st.text_input("Label contains", key="cmp.text", width=220)
    dead = st.segmented_control("Dead", ["all", "hide dead", "dead only"], default="all", key="cmp.dead")

shown = tables.filtered(frame, statuses, cats, text, dead or "all")
st.caption(f"{len(shown)} of {len(frame)} components · click a row, then Review it · click a column to sort")
event = st.dataframe(
    shown.drop(columns=["component_id"]), hide_index=True, width="stretch", height=520, key="cmp.table",
    on_select="rerun", selection_mode="single-row",
    column_config={
        "effect": st.column_config.NumberColumn(format="%.3f"),
        "consistency": st.column_config.ProgressColumn(min_value=0.0, max_value=1.0, format="%.2f"),
        "locality": st.column_config.NumberColumn(format="%.2f"),
        "colour": st.column_config.NumberColumn(format="%.2f"),
        "priority": st.column_config.NumberColumn(format="%.2f"),
        "human consistency": st.column_config.NumberColumn(format="%.1f"),
        "sigma": st.column_config.NumberColumn("σ", format="%.3f"),
    },
)
rows = event.selection.rows if event is not None else []
with st.container(horizontal=True, vertical_alignment="center"):
    if rows:
        picked = shown.iloc[rows[0]]
        if st.button(f"Review component {int(picked['index'])}", type="primary", icon=":material/rate_review:",
                     key="cmp.open"):
            st.session_state["rv.current"] = int(picked["component_id"])
            st.switch_page(ui.page_path("review"))

    dead_count = int(frame["dead"].sum())
    if dead_count:
        who = ui.reviewer()
        if st.button(f"Reject all {dead_count} dead components", icon=":material/delete_sweep:", key="cmp.dead_go",
                     help="Dead = the scores found almost no change. Rejects them as you, where you have not voted."):
            if not who:
                st.warning("Sign in with your name in the sidebar first.")
            else:
                done = tables.reject_dead(ctx.url, cset.id, who)
                st.toast(f"Rejected {done} dead components.")
                st.rerun()
    elif frame["effect"].isna().all():
        st.caption("Not scored yet, so no component is marked dead.")
