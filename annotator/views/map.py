"""Map: a UMAP of sampled W; pick a point to see its look; colour by k-means cluster or by a component."""
from __future__ import annotations

import altair as alt
import streamlit as st

from annotator import generate, imaging, maps, ui
from db import queries as q
from db.engine import read_session
from core.errors import AtelierError

ctx = ui.context()
renderer = ui.renderer(ctx)
st.title("Map")
st.caption("Each point is one sampled look (a seed); nearby points look alike. Pick a point to see it.")

found = maps.load(renderer)
with st.container(horizontal=True, vertical_alignment="bottom"):
    points = st.select_slider("Points", [500, 1000, 1500, 3000, 5000], value=maps.DEFAULT_POINTS, key="map.points")
    if st.button("Compute map" if found is None else "Recompute map", icon=":material/scatter_plot:", key="map.go"):
        with st.spinner("Sampling W and running UMAP (a minute on a laptop the first time)…"):
            try:
                found = maps.compute(renderer, points)
            except AtelierError as exc:
                st.error(ui.md(exc))
if found is None:
    st.info("No map for this model yet: press Compute map.")
    st.stop()

coords, seeds = found


@st.cache_data(max_entries=4, show_spinner=False)
def sampled_w(fingerprint: str, seed_list: tuple[int, ...]):
    return maps.w_of(renderer, seed_list)


w = sampled_w(renderer.fingerprint, tuple(int(s) for s in seeds))
with st.container(horizontal=True, vertical_alignment="bottom"):
    mode = st.segmented_control("Colour by", ["cluster", "component"], default="cluster", key="map.mode") or "cluster"
    if mode == "cluster":
        k = st.number_input("Clusters (k)", 2, 32, 8, key="map.k", width=140)
        colour = st.cache_data(maps.kmeans_labels, max_entries=8)(w, int(k)).astype(str)
        name = "cluster"
    else:
        cset = ui.require_set(ctx)
        index = st.number_input("Component", 0, cset.component_count - 1, 0, key="map.component", width=140)
        with read_session(ctx.url) as session:
            comp = next(c for c in q.list_components(session, cset.id) if c.index == int(index))
            vector = q.component_vector(session, comp.id)
        colour = maps.projection(w, vector)
        name = f"projection on {int(index)}"

data = maps.frame(coords, seeds, colour, name)
# nearest: a click anywhere picks the closest point, not only a click exactly on a 6-px dot.
pick = alt.selection_point(name="pick", fields=["seed"], on="click", nearest=True)
chart = (alt.Chart(data).mark_circle(size=36, opacity=0.8)
         .encode(x=alt.X("x", axis=None), y=alt.Y("y", axis=None),
                 color=alt.Color(name, type="nominal" if mode == "cluster" else "quantitative",
                                 # A named scheme for clusters too: scale=None hands the raw labels ("0" … "7")
                                 # to SVG as fill colours, which draws nothing.
                                 scale=alt.Scale(scheme="tableau20" if mode == "cluster" else "redblue")),
                 tooltip=["seed", name])
         .add_params(pick).properties(height=560))
left, right = st.columns([3, 1], gap="large")
with left:
    event = st.altair_chart(chart, on_select="rerun", key="map.chart", width="stretch")
with right:
    chosen = (event.selection.get("pick") or [{}])[0].get("seed") if event else None
    if chosen is None:
        st.caption("Click a point to see its look.")
    else:
        look = generate.LookState(seed=int(chosen), psi=1.0, class_index=0 if renderer.c_dim else None)
        st.image(imaging.data_url(generate.render_jpeg(renderer, look, [], display=256)), width="stretch")
        st.text(f"seed {int(chosen)}")
        if st.button("Open in Generate", icon=":material/open_in_new:", key="map.open"):
            st.switch_page(ui.page_path("generate"), query_params=generate.to_query(look))
