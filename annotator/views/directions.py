"""Directions & export: publish approved components as named sliders, unpublish, export and import sets."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from annotator import directions, imaging, ui
from core.errors import AtelierError
from db import queries as q
from db.engine import read_session
from workflows.imports import apply_import, plan_import

ctx = ui.context()
cset = ui.require_set(ctx)
st.title("Directions & export")
st.caption("Approved components become sliders on Generate once published, with a name, a category, the layers "
           "they move and the strength range of their slider (in σ).")

who = ui.reviewer()
if who and not ui.is_admin():
    st.info("Only an admin may publish, update, unpublish or import directions; you can look and export here.")
    who = None  # every action below needs a signed-in admin
with read_session(ctx.url) as session:
    active = q.active_directions(session, ctx.model.id)
cats = ui.categories(ctx.url)

st.header("Ready to publish")
st.caption("Every publish is checked: the strip shows the slider on a few review seeds across its range, and a slider "
           "that changes nothing visible, a component in conflict, or approvals on different layers is refused with "
           "the reason unless you override (the override is recorded with the direction).")
renderer = ui.renderer(ctx)
ready = directions.candidates(ctx.url, cset.id, ctx.model)
if not ready:
    st.info("No approved components waiting. Approve components (with a label) on the Review page first.")


def publish_candidate(candidate: directions.publish_flow.Candidate) -> None:
    cid = candidate.component_id
    state = st.session_state
    a, b = st.columns(2)
    a.text_input("Name", value=candidate.name, key=f"pub.name.{cid}", max_chars=200)
    b.selectbox("Category", cats, index=cats.index(candidate.category) if candidate.category in cats else None,
                key=f"pub.cat.{cid}", placeholder="Choose a category")
    start, stop = candidate.layer_range
    first, last = a.slider("Layers (ws rows)", 0, ctx.model.num_ws - 1, (start, stop - 1), key=f"pub.layers.{cid}")
    layers = (int(first), int(last) + 1)
    # (Also when the range widget's state is gone: Streamlit drops it while another page is shown.)
    if state.get(f"pub.span_for.{cid}") != layers or f"pub.strength.{cid}" not in state:
        # New layers: start the range from where the edit stays plausible on them (measured, per side).
        span = directions.default_span(ctx.url, renderer, cid, layers)
        state[f"pub.strength.{cid}"] = (span.low, span.high)
        state[f"pub.span_for.{cid}"] = layers
        state[f"pub.span_why.{cid}"] = f"Default range: {span.low:g} σ ({span.low_reason}) … +{span.high:g} σ " \
                                       f"({span.high_reason})."
    low, high = b.slider("Strength range (σ)", -10.0, 10.0, step=0.5, key=f"pub.strength.{cid}")
    b.caption(state.get(f"pub.span_why.{cid}", ""))
    try:
        checked = directions.proposal(ctx.url, renderer, ctx.model.id, cid, layers, (float(low), float(high)))
    except AtelierError as exc:
        st.error(ui.md(exc))
        return
    effect = checked.effect
    grid = imaging.strip_grid(effect.images, effect.seeds, effect.steps, cell=72)
    st.image(imaging.data_url(imaging.to_jpeg(grid)), caption="The slider's effect: review seeds × its range")
    st.caption(f"Measured change at the ends: {effect.low_change:.1%} at {low:g}σ, {effect.high_change:.1%} at "
               f"+{high:g}σ (a slider needs {directions.publishing.VISIBLE_CHANGE:.1%}).")
    for reason in checked.refusals:
        st.warning(ui.md(reason), icon=":material/block:")
    force = bool(checked.refusals) and st.checkbox("Publish anyway (the override and its reasons are recorded)",
                                                   key=f"pub.force.{cid}")
    if st.button("Publish", type="primary", icon=":material/publish:", key=f"pub.go.{cid}"):
        if not who:
            st.warning("Sign in with your name in the sidebar to publish.")
            return
        try:
            info = directions.publish(ctx.url, renderer, who, ctx.model.id, cid, state[f"pub.name.{cid}"],
                                      state[f"pub.cat.{cid}"], layers, (float(low), float(high)), force=force)
            st.toast(f"Published “{ui.md(info.name)}”.")
            st.rerun()
        except AtelierError as exc:
            st.error(ui.md(exc))


# One form at a time: each renders and measures its slider, which a page of many would wait for.
shown = ready
if len(ready) > 1:
    shown = [st.selectbox(f"Component to publish ({len(ready)} waiting)", ready, key="pub.choice",
                          format_func=lambda c: f"Component {c.index} · {c.name}")]
for candidate in shown:
    with st.container(border=True):
        st.markdown(f"**Component {candidate.index}** · approved by {candidate.approvals}")
        publish_candidate(candidate)

st.header("Published")
flagged = directions.flags(ctx.url, ctx.model.id)


def update(direction_id: int) -> None:
    if not who:
        st.session_state["pub.flash"] = "Sign in with your name in the sidebar to update."
        return
    try:
        info = directions.update(ctx.url, renderer, who, direction_id)
        st.session_state["pub.flash"] = f"Updated “{info.name}” to layers {info.layer_range[0]}–" \
                                        f"{info.layer_range[1] - 1}."
    except AtelierError as exc:
        st.session_state["pub.flash"] = str(exc)


if st.session_state.get("pub.flash"):
    st.info(ui.md(st.session_state.pop("pub.flash")))
if active:
    st.dataframe(pd.DataFrame([{
        "name": d.name, "category": d.category or "", "layers": f"{d.layer_range[0]}–{d.layer_range[1] - 1}",
        "strength (σ)": f"{d.strength_range[0]:g} … {d.strength_range[1]:g}", "source": d.source,
        "attention": "; ".join(x for x in (flagged[d.id].conflict, flagged[d.id].out_of_date) if x)
        if d.id in flagged else "",
        "overridden": "; ".join(d.override_reasons),
        "published by": d.published_by, "when": d.published_at.strftime("%Y-%m-%d %H:%M"),
    } for d in active]), hide_index=True, width="stretch")
    for d in active:
        flag = flagged.get(d.id)
        if flag is None:
            continue
        if flag.conflict:
            st.error(f"“{ui.md(d.name)}” — conflict: {ui.md(flag.conflict)}. Its slider is marked on Generate "
                     "until the team settles it.", icon=":material/warning:")
        if flag.out_of_date:
            with st.container(horizontal=True, vertical_alignment="center"):
                st.warning(f"“{ui.md(d.name)}” is out of date: {ui.md(flag.out_of_date)}.", icon=":material/update:")
                st.button("Update to the approved layers", key=f"pub.update.{d.id}", icon=":material/sync:",
                          on_click=update, args=(d.id,))
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
                    st.error(ui.md(exc))
else:
    st.caption("Nothing published yet.")

st.header("Export")
everything = st.toggle("Include every reviewed component (not only published directions)", key="export.all")
try:
    data = directions.export_bytes(ctx.url, ctx.model.id, all_reviewed=everything) if (active or everything) else None
except AtelierError as exc:
    data = None
    st.error(ui.md(exc))
if data is not None:
    st.download_button("Download direction set (.zip)", data=data, file_name=directions.export_file_name(ctx.model),
                       mime="application/zip", icon=":material/download:", on_click="ignore", key="export.download")
elif not active:
    st.caption("Publish directions to export them.")

st.header("Import")
upload = st.file_uploader("Direction set (.zip), GANSpace (.npz), InterFaceGAN (.npy) or SeFa file", key="import.file")
if upload is not None:
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
                st.error(ui.md(exc))
