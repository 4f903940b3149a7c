"""Overview: the active model, review progress by status and reviewer, agreement, scree plot, score spread."""
from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from annotator import services, tables, ui
from db import queries as q
from db import review_queue
from db.engine import read_session

ctx = ui.context()
cset = ui.require_set(ctx)
st.title("Overview")
arch = ctx.model.architecture
st.caption(f"Model {ui.md(ctx.model.name)} · {arch.get('img_resolution', '?')} px · {arch['num_ws']} ws rows · "
           f"component set {cset.id} ({cset.method}, {cset.component_count} components)")
if services.scoring_state(cset.id):
    st.info(ui.md(services.scoring_state(cset.id)))

with read_session(ctx.url) as session:
    progress = review_queue.progress(session, cset.id)
    agreement = review_queue.agreement(session, cset.id)
    components = q.list_components(session, cset.id)

reviewed = progress.total - progress.by_status.get("unreviewed", 0)
cols = st.columns(6)
cols[0].metric("Reviewed", f"{reviewed} / {progress.total}")
for col, status in zip(cols[1:], ("approved", "rejected", "unsure", "conflict", "in_review")):
    col.metric(status.replace("_", " ").capitalize(), progress.by_status.get(status, 0))
st.progress(reviewed / progress.total if progress.total else 0.0)

left, right = st.columns(2, gap="large")
with left:
    st.subheader("By reviewer")
    frame = tables.reviewer_frame(progress)
    if frame.empty:
        st.caption("No reviews yet.")
    else:
        st.dataframe(frame, hide_index=True, width="stretch")
with right:
    st.subheader("Agreement")
    a, b = st.columns(2)
    alpha = agreement.decision_alpha
    a.metric("Decisions (Krippendorff α)", "—" if alpha is None else f"{alpha:.2f}",
             help=f"From {agreement.decision_units} components rated by two or more reviewers.")
    b.metric("Categories (α)", "—" if agreement.category_alpha is None else f"{agreement.category_alpha:.2f}",
             help=f"From {agreement.category_units} components with two or more categories.")
    if agreement.decision_alpha is None:
        st.caption("α needs components reviewed by at least two people.")

left, right = st.columns(2, gap="large")
with left:
    st.subheader("Scree plot")
    values = [c.eigenvalue for c in components if c.eigenvalue is not None]
    if values:
        st.line_chart(pd.DataFrame({"component": range(len(values)), "eigenvalue": values}), x="component",
                      y="eigenvalue", height=260)
    else:
        st.caption("This set has no eigenvalues.")
with right:
    st.subheader("Scores")
    scored = [c for c in components if c.effect is not None]
    if not scored:
        st.caption("Not scored yet.")
    else:
        metric = st.segmented_control("Score", ["effect", "consistency", "locality", "priority"], default="priority",
                                      key="ov.score") or "priority"
        data = np.array([getattr(c, metric) for c in scored if getattr(c, metric) is not None], dtype=float)
        counts, edges = np.histogram(data, bins=24)
        st.bar_chart(pd.DataFrame({metric: [f"{(lo + hi) / 2:.2f}" for lo, hi in zip(edges[:-1], edges[1:])],
                                   "components": counts}), x=metric, y="components", height=230)
        st.caption(f"{sum(c.dead for c in scored)} marked dead.")
