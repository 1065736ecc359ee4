"""Streamlit glue for a shared server (core.pipeline.classroom, core.pipeline.queue): the one fair queue of the
process, who this session is, the optional login, and who may see the admin view. Pages never call this directly:
ui.start_page asks for the login, ui.engine passes the queue, ui.runs shows the place in line; pages/classroom.py is
the admin view.
"""

from __future__ import annotations

import streamlit as st

from core.pipeline import classroom
from core.pipeline.queue import FairQueue
from core.present.markup import md_literal

ADMIN_STATE = "_classroom_admin"  # session_state: this session typed the admin token


@st.cache_resource(show_spinner=False)
def _shared_queue() -> FairQueue:
    """One queue for the process: every session's runs take turns on the one GPU (and the pipeline, which is not
    thread-safe, is used by one batch at a time)."""
    return FairQueue(classroom.load_settings().limits, free_memory=classroom.gpu_free_bytes)


def settings() -> classroom.ClassroomSettings:
    """The lecturer's settings, read on every run (an edited lab.toml counts from the next click on); a broken
    file stops the page with its message."""
    try:
        return classroom.load_settings()
    except classroom.ClassroomConfigError as exc:
        st.error(str(exc))
        st.stop()


def queue() -> FairQueue:
    q = _shared_queue()
    q.limits = settings().limits
    return q


def _user_email() -> str | None:
    try:
        user = st.user
        return str(user.get("email") or "") or None if user.is_logged_in else None
    except Exception:  # no auth configured, or a test harness without a user
        return None


def person() -> str:
    """This session's key in the queue: the login's e-mail, else this browser (shared by its tabs)."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    try:
        cookies = dict(st.context.cookies)
    except Exception:
        cookies = {}
    return classroom.person_from(email=_user_email(), cookies=cookies, session_id=ctx.session_id if ctx else "")


def auth_configured() -> bool:
    """Whether .streamlit/secrets.toml has an [auth] table for st.login."""
    try:
        return "auth" in st.secrets
    except Exception:  # no secrets file at all
        return False


def require_login() -> None:
    """With `login = true` in lab.toml: stop the page until the visitor has logged in (Streamlit's st.login with
    the OIDC provider of .streamlit/secrets.toml), and offer Log out in the sidebar once they have."""
    conf = settings()
    if not conf.login:
        return
    if not auth_configured():
        st.error(f"Login is required ({conf.source}: [classroom] login = true), but .streamlit/secrets.toml has no "
                 f"[auth] table, so nobody can log in. Add [auth] with redirect_uri, cookie_secret, client_id, "
                 f"client_secret and server_metadata_url (README: Serving it to a class), or set login = false.")
        st.stop()
    if not st.user.is_logged_in:
        st.title("Diffusion Diversity Lab")
        st.info("This server is shared by a class: log in to use it. Your runs are queued under your login, so "
                "your tabs share one place in the queue.")
        st.button("Log in", on_click=st.login, type="primary", key="classroom_login")
        st.stop()
    with st.sidebar:
        st.caption(f"Logged in as {md_literal(_user_email() or 'unknown')}")  # the login's text, never Markdown
        st.button("Log out", on_click=st.logout, key="classroom_logout")


def is_admin() -> bool:
    """The lecturer: a login on [classroom] admins, or a session that typed the admin token."""
    return classroom.is_admin(settings(), email=_user_email(), token=st.session_state.get(ADMIN_STATE))


def waiting(progress):
    """An on_wait callback for Engine.generate that writes the place in line into ui.working's bar (its next
    update is also where a Cancel click stops the page, and so leaves the queue)."""
    import time

    last = {"text": "", "at": 0.0}

    def on_wait(status) -> None:
        # Draw when the line changes, and at least once a second: each draw is also where a Cancel click (or a
        # closed tab) stops the page, so a waiting run leaves the queue within a second. Twelve waiting pages
        # redrawn four times a second cost the server and the browsers more than the queue itself.
        text, now = status.describe(), time.monotonic()
        if text != last["text"] or now - last["at"] >= 1.0:
            progress(0, 1, text)
            last.update(text=text, at=now)

    return on_wait


def run_label(prompts: list[str]) -> str:
    """What the admin view shows for a run: its first prompt (shown as data, never as Markdown), and how many
    others."""
    first = prompts[0][:80] if prompts else ""
    return first + (f" (+{len(prompts) - 1} more)" if len(prompts) > 1 else "")


def session_count() -> int | str:
    """Browser sessions connected to this server (Streamlit's session manager; pinned Streamlit 1.67)."""
    try:
        from streamlit.runtime import Runtime

        return Runtime.instance()._session_mgr.num_active_sessions()
    except Exception:  # e.g. under AppTest, which has no server
        return "-"


def gpu_memory() -> str:
    """One line on memory: the GPU's (used, total, what torch holds) where there is one, and the server's RAM."""
    import resource

    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KB
    try:
        with open("/proc/self/status") as f:
            rss_mb = next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmRSS:"))
    except (OSError, StopIteration, ValueError):
        pass
    text = f"Server memory: {rss_mb:,.0f} MB resident."
    import sys

    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        free, total = torch.cuda.mem_get_info()
        gb = 1024**3
        text += (f" GPU: {(total - free) / gb:.1f} of {total / gb:.1f} GB used; torch holds "
                 f"{torch.cuda.memory_reserved() / gb:.1f} GB, of which {torch.cuda.memory_allocated() / gb:.1f} GB "
                 f"in use; new runs need {settings().limits.gpu_headroom_gb:g} GB free.")
    else:
        text += " No GPU in use (generation runs on the CPU)."
    return text
