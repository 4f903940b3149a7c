"""Directions & export: publish approved components as named sliders, unpublish, export and import sets."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from annotator import directions, ui
from db import queries as q
from db.engine import read_session
from model.errors import AtelierError

ctx = ui.context()
cset = ui.require_set(ctx)
st.title("Directions & export")
st.caption("Approved components become sliders on Generate once published, with a name, a category, the layers "
           "they move and the strength range of their slider (in σ).")

who = ui.reviewer()
with read_session(ctx.url) as session:
    active = q.active_directions(session, ctx.model.id)
cats = ui.categories(ctx.url)

st.header("Ready to publish")
ready = directions.candidates(ctx.url, cset.id, ctx.model)
if not ready:
    st.info("No approved components waiting. Approve components (with a label) on the Review page first.")
for candidate in ready:
    with st.container(border=True):
        st.markdown(f"**Component {candidate.index}** · approved by {candidate.approvals}")
        with st.form(f"pub.{candidate.component_id}", border=False):
            a, b = st.columns(2)
            a.text_input("Name", value=candidate.name, key=f"pub.name.{candidate.component_id}", max_chars=200)
            b.selectbox("Category", cats, index=cats.index(candidate.category) if candidate.category in cats else None,
                        key=f"pub.cat.{candidate.component_id}", placeholder="Choose a category")
            start, stop = candidate.layer_range
            a.slider("Layers (ws rows)", 0, ctx.model.num_ws - 1, (start, stop - 1),
                     key=f"pub.layers.{candidate.component_id}")
            low, high = candidate.strength_range
            b.slider("Strength range (σ)", -10.0, 10.0, (float(low), float(high)), step=0.5,
                     key=f"pub.strength.{candidate.component_id}")
            pressed = st.form_submit_button("Publish", type="primary", icon=":material/publish:")
        if pressed:
            if not who:
                st.warning("Sign in with your name in the sidebar to publish.")
            else:
                cid = candidate.component_id
                first, last = st.session_state[f"pub.layers.{cid}"]
                try:
                    info = directions.publish(ctx.url, who, ctx.model.id, cid, st.session_state[f"pub.name.{cid}"],
                                              st.session_state[f"pub.cat.{cid}"], (int(first), int(last) + 1),
                                              tuple(st.session_state[f"pub.strength.{cid}"]))
                    st.toast(f"Published “{ui.md(info.name)}”.")
                    st.rerun()
                except AtelierError as exc:
                    st.error(str(exc))

st.header("Published")
if active:
    st.dataframe(pd.DataFrame([{
        "name": d.name, "category": d.category or "", "layers": f"{d.layer_range[0]}–{d.layer_range[1] - 1}",
        "strength (σ)": f"{d.strength_range[0]:g} … {d.strength_range[1]:g}", "source": d.source,
        "published by": d.published_by, "when": d.published_at.strftime("%Y-%m-%d %H:%M"),
    } for d in active]), hide_index=True, width="stretch")
    with st.container(horizontal=True, vertical_alignment="bottom"):
        chosen = st.selectbox("Direction", active, format_func=lambda d: d.name, key="unpub.choice")
        if st.button("Unpublish", icon=":material/unpublished:", key="unpub.go"):
            if not who:
                st.warning("Sign in with your name in the sidebar to unpublish.")
            else:
                try:
                    directions.unpublish(ctx.url, who, chosen.id)
                    st.rerun()
                except AtelierError as exc:
                    st.error(str(exc))
else:
    st.caption("Nothing published yet.")

st.header("Export")
everything = st.toggle("Include every reviewed component (not only published directions)", key="export.all")
try:
    data = directions.export_bytes(ctx.url, ctx.model.id, all_reviewed=everything) if (active or everything) else None
except AtelierError as exc:
    data = None
    st.error(str(exc))
if data is not None:
    st.download_button("Download direction set (.zip)", data=data, file_name=directions.export_file_name(ctx.model),
                       mime="application/zip", icon=":material/download:", on_click="ignore", key="export.download")
elif not active:
    st.caption("Publish directions to export them.")

st.header("Import")
upload = st.file_uploader("Direction set (.zip), GANSpace (.npz), InterFaceGAN (.npy) or SeFa file", key="import.file")
if upload is not None:
    try:
        from model.direction_set import apply_import, plan_import
    except ImportError:
        st.error("Import needs model/direction_set.py, which is not installed.")
        st.stop()
    force = st.toggle("Import even if the file was made for another model", key="import.force")
    publish = st.toggle("Publish the imported directions", key="import.publish")
    plan = plan_import(upload.getvalue(), ctx.model.fingerprint, force, url=ctx.url, publish=publish,
                       renderer=ui.renderer(ctx), filename=upload.name)
    st.code(plan.summary(), language=None)
    if plan.ok and st.button("Apply import", type="primary", key="import.apply"):
        if not who:
            st.warning("Sign in with your name in the sidebar to import.")
        else:
            try:
                result = apply_import(plan, ctx.url, who)
                st.success(f"Imported: {len(result.published)} published, {len(result.replaced)} replaced, "
                           f"{result.reviews} reviews.")
            except AtelierError as exc:
                st.error(str(exc))
