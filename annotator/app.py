"""Atelier's browser app: `atelier app` (or `streamlit run annotator/app.py`).

The entry point only sets the page up, signs the reviewer in and routes; each page is a small file in views/.
"""
from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

# `streamlit run annotator/app.py` from a checkout: make the project's packages importable.
_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from annotator import ui  # noqa: E402
from annotator.page_errors import run_page  # noqa: E402

st.set_page_config(page_title="Atelier", page_icon="🧵", layout="wide")

ctx = ui.context()
ui.sidebar_identity()

REVIEW = st.Page(ui.page_path("review"), title="Review", icon=":material/rate_review:", url_path="review")


def _start() -> None:
    """The app's root URL opens Review. Streamlit serves its default page only at "/", so Review itself is not the
    default: that way /review (a reload, a bookmark, a link) opens it too instead of "Page not found"."""
    st.switch_page(REVIEW, query_params=dict(st.query_params))


PAGES = {
    "Team": [
        st.Page(_start, title="Start", url_path="start", default=True, visibility="hidden"),
        st.Page(ui.page_path("overview"), title="Overview", icon=":material/insights:", url_path="overview"),
        REVIEW,
        st.Page(ui.page_path("components"), title="Components", icon=":material/table_rows:",
                url_path="components"),
    ],
    "Design": [
        st.Page(ui.page_path("generate"), title="Generate", icon=":material/palette:", url_path="generate"),
        st.Page(ui.page_path("looks"), title="Looks", icon=":material/photo_library:", url_path="looks"),
        st.Page(ui.page_path("map"), title="Map", icon=":material/scatter_plot:", url_path="map"),
    ],
    "Setup": [
        st.Page(ui.page_path("directions"), title="Directions & export", icon=":material/tune:",
                url_path="directions"),
        st.Page(ui.page_path("models"), title="Models", icon=":material/model_training:", url_path="models"),
        st.Page(ui.page_path("training"), title="Training", icon=":material/monitoring:", url_path="training"),
    ],
}

page = st.navigation(PAGES)
ui.gate()  # team mode: the sign-in form, and nothing else, until the person has signed in
with st.sidebar:
    st.divider()
    st.caption("Model")
    st.text(ctx.model.name)
run_page(page, served_to_team=ui.team())  # no traceback with server paths reaches a teammate's browser
