"""Streamlit helpers shared by the pages: start-up, the signed-in reviewer, errors, page links.

The only module besides app.py and views/ that imports streamlit; all logic lives in the non-Streamlit modules.
"""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from workflows import registry
from annotator import services
from db import accounts
from db import queries as q
from db.records import ComponentSetInfo
from db.engine import read_session, write_session
from core.errors import AtelierError

PAGES_DIR = Path(__file__).resolve().parent / "views"
REVIEWER_KEY = "reviewer"
TOKEN_KEY = "session_token"
# The signed session token (db/accounts.py) lives in this cookie, so a reload keeps the reviewer signed in.
COOKIE = "atelier_session"


@st.cache_resource(show_spinner="Preparing the model and its components (first start only)…")
def _boot(url: str) -> bool:
    services.bootstrap(url)
    return True


def context() -> services.Context:
    """The active model and component set; the first call in a process migrates and bootstraps."""
    from core.settings import database_url

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
        return registry.renderer_for(ctx.model)
    except AtelierError as exc:
        st.error(str(exc))
        st.stop()
        raise


def team() -> bool:
    """Team mode (accounts, sign-in with a password, roles): see db/accounts.py for when it is on."""
    with read_session(context().url) as session:
        return accounts.team_mode(session)


def reviewer() -> str | None:
    """The signed-in reviewer, made sure to exist in this database (it may have been switched since sign-in).

    A new browser session (a reload) picks the reviewer up from the signed cookie. In team mode the token is checked
    on every run, so a disabled account or a new password ends a session at its next click.
    """
    state = st.session_state
    url = context().url
    if not state.get(REVIEWER_KEY) and not state.get("signed_out"):
        with read_session(url) as session:
            from_cookie = accounts.verify_token(session, st.context.cookies.get(COOKIE))
        if from_cookie:
            state[REVIEWER_KEY] = from_cookie
            state[TOKEN_KEY] = st.context.cookies.get(COOKIE)
    name = state.get(REVIEWER_KEY)
    if name and team():
        with read_session(url) as session:
            if accounts.verify_token(session, state.get(TOKEN_KEY)) != name:
                _sign_out()
                return None
    if name:
        if state.get("reviewer_db") != (name, url):
            with write_session(url) as session:
                q.ensure_reviewer(session, name)
            state["reviewer_db"] = (name, url)
    return name


def _sign_in() -> None:
    state = st.session_state
    name = (state.get("signin_name") or "").strip()
    password = state.pop("signin_password", "") or ""
    if not name:
        state["signin_error"] = "Type your name to sign in."
        return
    try:
        with write_session(context().url) as session:
            if accounts.team_mode(session):
                person = accounts.authenticate(session, name, password).name
            else:
                person = q.ensure_reviewer(session, name).name
            token = accounts.issue_token(session, person)
    except AtelierError as exc:
        state["signin_error"] = str(exc)
        return
    state[REVIEWER_KEY] = person
    state[TOKEN_KEY] = token
    state["cookie_script"] = _cookie_script(token, accounts.TOKEN_LIFETIME_S)
    state.pop("signin_error", None)
    state.pop("signed_out", None)


def _sign_out() -> None:
    st.session_state.pop(REVIEWER_KEY, None)
    st.session_state.pop(TOKEN_KEY, None)
    # The cookie stays in the browser until the script below clears it; without this flag the same run would
    # sign the reviewer straight back in from it.
    st.session_state["signed_out"] = True
    st.session_state["cookie_script"] = _cookie_script("", 0)


def _cookie_script(token: str, max_age: int) -> str:
    # Set by the page itself: Streamlit offers no way to send a Set-Cookie header. SameSite=Strict keeps other sites'
    # links and forms from carrying it; Secure is added when the team serves the app over HTTPS.
    return ("<script>document.cookie = '" + COOKIE + "=" + token + "; path=/; max-age=" + str(int(max_age))
            + "; SameSite=Strict' + (window.location.protocol === 'https:' ? '; Secure' : '');</script>")


def _sign_in_form(team_mode: bool) -> None:
    with st.form("signin", border=False):
        st.text_input("Your name", key="signin_name", placeholder="e.g. Ana",
                      help="Every review carries it." if team_mode else
                      "Chosen once per browser; every review carries it.")
        if team_mode:
            st.text_input("Password", key="signin_password", type="password")
        st.form_submit_button("Sign in", on_click=_sign_in, type="primary")
    if st.session_state.get("signin_error"):
        st.error(md(st.session_state["signin_error"]))


def sidebar_identity() -> None:
    with st.sidebar:
        # Rendered on every run, not once: a run that Streamlit replaces before the browser has drawn it (a key
        # pressed right after signing in) would otherwise drop the script, and a reload would then sign the person
        # out. Setting the same cookie again is harmless.
        script = st.session_state.get("cookie_script")
        if script:
            st.html(script, unsafe_allow_javascript=True, width="content")
        name = reviewer()
        if name:
            st.caption("Signed in as")
            st.text(name + ("  (admin)" if team() and is_admin() else ""))
            st.button("Sign out" if team() else "Switch reviewer", on_click=_sign_out, type="tertiary",
                      key="signout")
        elif not team():
            _sign_in_form(False)


def gate() -> None:
    """In team mode nothing shows until the person has signed in with their password."""
    if not team() or reviewer():
        return
    st.title("Sign in")
    st.caption("This Atelier server is shared by a team: sign in with your account. An admin creates accounts with "
               "`atelier users add NAME`.")
    _sign_in_form(True)
    st.stop()


def is_admin() -> bool:
    with read_session(context().url) as session:
        return accounts.is_admin(session, st.session_state.get(REVIEWER_KEY))


def require_admin(action: str) -> None:
    """Stop the page with a message unless the signed-in person may do this (always true outside team mode)."""
    if not is_admin():
        st.info(f"Only an admin may {action}.")
        st.stop()


def require_reviewer(action: str) -> str:
    """The signed-in reviewer, or a prompt to sign in (and the page stops)."""
    name = reviewer()
    if not name:
        st.info(f"Sign in with your name in the sidebar to {action}.")
        st.stop()
    return name  # type: ignore[return-value]


def require_set(ctx: services.Context) -> ComponentSetInfo:
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
