"""Models: register a generator (path or upload), choose the active one, compute and choose component sets."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from workflows import registry
from annotator import access, services, ui
from db import queries as q
from db.engine import read_session
from core.errors import AtelierError

ctx = ui.context()
st.title("Models")

with read_session(ctx.url) as session:
    models = q.list_models(session)
st.dataframe(pd.DataFrame([{
    "active": "●" if m.id == ctx.model.id else "", "name": m.name,
    "resolution": m.architecture.get("img_resolution"), "ws rows": m.num_ws, "w dim": m.w_dim,
    "classes": m.architecture.get("c_dim", 0), "fingerprint": m.fingerprint[:12], "path": m.path,
} for m in models]), hide_index=True, width="stretch")

ui.require_admin("switch the active model, register models or compute component sets")
ids = [m.id for m in models]
chosen = st.selectbox("Active model", ids, index=ids.index(ctx.model.id), key="models.active",
                      format_func=lambda i: next(m.name for m in models if m.id == i))
if chosen != ctx.model.id:
    services.set_active_model(chosen)
    st.rerun()

st.header("Register a model")
with st.form("models.register"):
    path = st.text_input("Path on the server", placeholder="/data/runs/network-snapshot-001000.safetensors",
                         key="models.path")
    upload = st.file_uploader("…or upload a file", type=["safetensors", "pkl"], key="models.upload")
    label = st.text_input("Name (optional)", key="models.name")
    go = st.form_submit_button("Register", type="primary")
if go:
    try:
        if not upload and not path.strip():
            raise AtelierError("Give a path or upload a file.")
        with st.spinner("Loading and checking the generator…"):
            if upload is not None:  # a refused upload is not kept
                info = registry.register_upload(upload.name, upload.getvalue(), label, ctx.url)
            else:
                # A team server opens only paths in its configured folders (annotator/access.py).
                where = access.server_path(path, team=ui.team())
                info = registry.register_model_file(str(where), label, ctx.url)
        st.success(f"Registered {ui.md(info.name)}. Choose it above to work on it.")
    except AtelierError as exc:
        st.error(ui.md(exc))

st.header(f"Component sets of {ui.md(ctx.model.name)}")
with read_session(ctx.url) as session:
    sets = q.list_component_sets(session, ctx.model.id)
if sets:
    set_ids = [s.id for s in sets]
    current = ctx.component_set.id if ctx.component_set else set_ids[0]
    picked = st.selectbox("Set to review", set_ids, index=set_ids.index(current), key="models.set",
                          format_func=lambda i: next(f"#{s.id} {s.method} · {s.component_count} components · "
                                                     f"{s.created_at:%Y-%m-%d %H:%M}" for s in sets if s.id == i))
    if picked != current:
        services.set_active_component_set(ctx.model.id, picked)
        st.rerun()
    state = services.scoring_state(picked)
    if state:
        st.info(ui.md(state))  # it can quote a scoring error
    elif st.button("Score this set in the background", icon=":material/analytics:", key="models.score"):
        services.start_scoring(picked, ctx.model, ctx.url)
        st.rerun()

with st.form("models.discover"):
    a, b = st.columns(2)
    method = a.selectbox("Method", ["sefa", "pca", "kmeans"], key="models.method",
                         help="SeFa: from the weights, in a second. PCA: of sampled W (GANSpace). k-means: looks.")
    layers = b.selectbox("Layers", ["all", "coarse", "middle", "fine"], key="models.layers",
                         help="SeFa only: which layers' style weights to factorise.")
    compute = st.form_submit_button("Compute a component set", type="primary")
if compute:
    bar = st.progress(0.0, text="starting")
    try:
        info = services.create_component_set(ctx.model, ctx.url, method, layers,
                                             progress=lambda f, text: bar.progress(min(1.0, f), text=text))
        st.success(f"Set #{info.id}: {info.component_count} components, now the set to review.")
    except AtelierError as exc:
        st.error(ui.md(exc))
