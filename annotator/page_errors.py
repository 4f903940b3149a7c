"""The app's one handler for errors that reach the top of a page.

A page that fails shows a plain message instead of Streamlit's exception box, which would show the server's file
paths and code to whoever is looking. A user-facing problem (AtelierError) is shown as its own message; anything
else is logged with its traceback on the server, and the browser is told only that something went wrong there.
On a local single-user app the developer at the keyboard may want the traceback, so it is raised on unless the
app is served to a team (`atelier app --host`, where Streamlit also hides error details: client.showErrorDetails).
"""
from __future__ import annotations

import logging
from typing import Any

import streamlit as st

from core.errors import AtelierError

LOG = logging.getLogger("atelier.app")
SERVER_ERROR = ("Something went wrong on the server while showing this page. Reload the page; if it happens again, "
                "tell the person who runs Atelier (the details are in the server's log).")


def run_page(page: Any, served_to_team: bool) -> None:
    """Run a Streamlit page; failures become messages (see the module docstring)."""
    try:
        page.run()
    except AtelierError as exc:
        from annotator.ui import md

        st.error(md(exc))
    except Exception:  # the single top-level handler of the app: Streamlit's rerun/stop are BaseExceptions
        if not served_to_team:
            raise
        LOG.exception("page %r failed", getattr(page, "title", page))
        st.error(SERVER_ERROR)
