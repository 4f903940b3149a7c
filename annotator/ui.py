"""Streamlit helpers shared by the pages: start-up, the signed-in reviewer, errors, page links.

The only module besides app.py and views/ that imports streamlit; all logic lives in the non-Streamlit modules.
"""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from annotator import services
from db import queries as q
from db.engine import read_session, write_session
from model.errors import AtelierError

PAGES_DIR = Path(__file__).resolve().parent / "views"
REVIEWER_KEY = "reviewer"


@st.cache_resource(show_spinner="Preparing the model and its components (first start only)…")
def _boot(url: str) -> bool:
    services.bootstrap(url)
    return True


def context() -> services.Context:
    """The active model and component set; the first call in a process migrates and bootstraps."""
    from model.settings import database_url

    url = database_url()
    try:
        _boot(url)
        return services.context(url)
    except AtelierError as exc:
        st.error(str(exc))
        st.stop()
        raise


def renderer(ctx: services.Context):
    try:
        return services.renderer_for(ctx.model)
    except AtelierError as exc:
        st.error(str(exc))
        st.stop()
        raise


def reviewer() -> str | None:
    """The signed-in reviewer, made sure to exist in this database (it may have been switched since sign-in)."""
    name = st.session_state.get(REVIEWER_KEY)
    if name:
        url = context().url
        if st.session_state.get("reviewer_db") != (name, url):
            with write_session(url) as session:
                q.ensure_reviewer(session, name)
            st.session_state["reviewer_db"] = (name, url)
    return name


def _sign_in() -> None:
    name = (st.session_state.get("signin_name") or "").strip()
    if not name:
        st.session_state["signin_error"] = "Type your name to sign in."
        return
    try:
        with write_session(context().url) as session:
            person = q.ensure_reviewer(session, name)
    except AtelierError as exc:
        st.session_state["signin_error"] = str(exc)
        return
    st.session_state[REVIEWER_KEY] = person.name
    st.session_state.pop("signin_error", None)


def _sign_out() -> None:
    st.session_state.pop(REVIEWER_KEY, None)


def sidebar_identity() -> None:
    with st.sidebar:
        name = reviewer()
        if name:
            st.caption("Signed in as")
            st.text(name)
            st.button("Switch reviewer", on_click=_sign_out, type="tertiary", key="signout")
        else:
            with st.form("signin", border=False):
                st.text_input("Your name", key="signin_name", placeholder="e.g. Ana",
                              help="Chosen once per browser session; every review carries it.")
                st.form_submit_button("Sign in", on_click=_sign_in, type="primary")
            if st.session_state.get("signin_error"):
                st.error(st.session_state["signin_error"])


def require_reviewer(action: str) -> str:
    """The signed-in reviewer, or a prompt to sign in (and the page stops)."""
    name = reviewer()
    if not name:
        st.info(f"Sign in with your name in the sidebar to {action}.")
        st.stop()
    return name  # type: ignore[return-value]


def require_set(ctx: services.Context) -> q.ComponentSetInfo:
    if ctx.component_set is None:
        st.info("The active model has no component set yet: compute one on the Models page.")
        st.stop()
    return ctx.component_set  # type: ignore[return-value]


def categories(url: str) -> list[str]:
    with read_session(url) as session:
        return [c.name for c in q.list_categories(session)]


def page_path(name: str) -> str:
    return str(PAGES_DIR / f"{name}.py")


def md(text: object) -> str:
    """User text (labels, names, notes) made safe to embed in Markdown: shown literally, never rendered."""
    from annotator.review import escape_markdown

    return escape_markdown(str(text))
