"""A shared server through AppTest: the limit messages, the place in line while another person's batch runs, the
optional login (st.login, with AppTest's simulated st.user) and the lecturer-only Classroom page."""

from __future__ import annotations

import threading
import time

import pytest
from streamlit.testing.v1 import AppTest

from app import queue as ui_queue

TIMEOUT = 180
AUTH = {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "x" * 32, "client_id": "lab",
        "client_secret": "secret", "server_metadata_url": "https://idp.example.org/.well-known/openid-configuration"}
TOKEN = "lecturer-token-0123456789"


@pytest.fixture(autouse=True)
def env(tmp_path, monkeypatch):
    import streamlit as st

    monkeypatch.setenv("DDL_CACHE_DIR", str(tmp_path / "cache"))
    st.cache_data.clear()
    yield
    st.cache_data.clear()


def lab_toml(tmp_path, monkeypatch, **values) -> None:
    lines = ["[classroom]"] + [f"{k} = {v!r}".replace("True", "true").replace("False", "false").replace("'", '"')
                               for k, v in values.items()]
    path = tmp_path / "lab.toml"
    path.write_text("\n".join(lines) + "\n")
    monkeypatch.setenv("DDL_CONFIG", str(path))


def shared_queue():
    """The process's queue, as the pages get it (with the limits of the config file in force now)."""
    from core.pipeline.classroom import load_settings

    queue = ui_queue._shared_queue()
    queue.limits = load_settings().limits
    return queue


def page(path: str, params: dict | None = None, user: dict | None = None, secrets: dict | None = None) -> AppTest:
    at = AppTest.from_file("../../Home.py", default_timeout=TIMEOUT)
    at.switch_page(path)
    for k, v in (params or {}).items():
        at.query_params[k] = v
    if user is not None:
        at.user = user
    for k, v in (secrets or {}).items():
        at.secrets[k] = v
    return at.run()


def press_generate(at: AppTest, prompt: str, n: int) -> AppTest:
    at.selectbox(key="generator").set_value("tiny-random").run()
    at.selectbox(key="clip").set_value("tiny-random")
    at.text_input[0].set_value(prompt)
    at.number_input[0].set_value(n)
    at.number_input(key="size-tiny-random").set_value(64)
    return at.button[0].click().run()


def test_a_run_over_the_limit_gets_the_message_and_makes_nothing(tmp_path, monkeypatch):
    lab_toml(tmp_path, monkeypatch, images_per_run=2)
    at = press_generate(page("pages/diversity.py"), "a photo of a tench", 4)
    assert not at.exception
    errors = [e.value for e in at.error]
    assert any("This run would make 4 new images; the limit on this server is 2 per run" in e for e in errors), errors
    assert not list((tmp_path / "cache").glob("images/**/*.png"))


def test_waiting_behind_another_person_then_generating(tmp_path, monkeypatch):
    """Another person holds the GPU: the page's run waits in the shared queue (its place visible to the lecturer),
    and generates as soon as the GPU is free."""
    lab_toml(tmp_path, monkeypatch)
    queue = shared_queue()
    holder = queue.submit("someone-else", 4)
    at = page("pages/diversity.py")
    at.selectbox(key="generator").set_value("tiny-random").run()
    at.selectbox(key="clip").set_value("tiny-random")
    at.text_input[0].set_value("waiting in line")
    at.number_input[0].set_value(2)
    at.number_input(key="size-tiny-random").set_value(64)
    button = at.button[0].click()
    done = []
    with holder:
        runner = threading.Thread(target=lambda: done.append(button.run()))
        runner.start()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            runs = queue.snapshot().runs
            mine = [r for r in runs if r["what"] == "waiting in line"]
            if mine and mine[0]["state"] == "waiting":
                break
            time.sleep(0.05)
        else:
            pytest.fail(f"the page's run never showed up waiting in the queue: {queue.snapshot().runs}")
        ticket = queue.find(mine[0]["run"])
        status = ticket.status()
        assert status.ahead == 0 and "Your turn is next" in status.describe()
        assert mine[0]["person"].startswith("session:")  # AppTest sends no cookies: the session is the person
    holder.close()
    runner.join(120)
    at = done[0]
    assert not at.exception
    assert any("2 images generated" in s.value for s in at.success)
    assert queue.snapshot().runs == []


def test_login_required_without_auth_settings_says_how_to_fix(tmp_path, monkeypatch):
    lab_toml(tmp_path, monkeypatch, login=True)
    at = page("pages/home.py")
    assert "secrets.toml has no [auth] table" in at.error[0].value and "login = false" in at.error[0].value


def test_login_required_shows_only_the_log_in_button(tmp_path, monkeypatch):
    lab_toml(tmp_path, monkeypatch, login=True)
    at = page("pages/diversity.py", user={"is_logged_in": False}, secrets={"auth": AUTH})
    assert not at.exception
    assert [b.label for b in at.button] == ["Log in"]
    assert not at.text_input  # the page itself never ran


def test_logged_in_uses_the_page_and_can_log_out(tmp_path, monkeypatch):
    lab_toml(tmp_path, monkeypatch, login=True)
    at = page("pages/diversity.py", user={"is_logged_in": True, "email": "Student@Example.org"},
              secrets={"auth": AUTH})
    assert not at.exception
    assert "Log out" in [b.label for b in at.sidebar.button]
    # The e-mail is user text: escaped in the caption (core.present.markup.md_literal), so it shows as typed.
    assert any(c.value == "Logged in as Student\\@Example.org" for c in at.sidebar.caption)
    assert at.text_input  # the page's form is there


def test_a_login_name_is_shown_as_text_not_markdown(tmp_path, monkeypatch):
    lab_toml(tmp_path, monkeypatch, login=True)
    at = page("pages/home.py", user={"is_logged_in": True, "email": "**bold**_x_@example.org"},
              secrets={"auth": AUTH})
    caption = next(c for c in at.sidebar.caption if "Logged in as" in c.value)
    assert caption.value == "Logged in as \\*\\*bold\\*\\*\\_x\\_\\@example.org"  # escaped: shown as typed


def test_login_off_by_default(tmp_path, monkeypatch):
    monkeypatch.setenv("DDL_CONFIG", "")
    monkeypatch.chdir(tmp_path)
    at = page("pages/diversity.py")
    assert not at.exception and at.text_input and "Log in" not in [b.label for b in at.button]


def test_classroom_page_is_for_the_lecturer_only(tmp_path, monkeypatch):
    lab_toml(tmp_path, monkeypatch, admin_token=TOKEN)
    at = page("pages/classroom.py")
    assert "This page is for the lecturer" in at.info[0].value
    assert not at.metric and not at.table
    at.text_input[0].set_value("wrong-token-000000")
    at = at.button[0].click().run()
    assert "not the admin token" in at.error[0].value and not at.metric
    at.text_input[0].set_value(TOKEN)
    at = at.button[0].click().run()
    assert not at.exception
    labels = [m.label for m in at.metric]
    assert labels == ["People in the queue", "Runs waiting", "Images/s (last 2 min)", "Images made", "Sessions open"]
    limits = at.table[0].value
    assert list(limits["key in [classroom]"]) == ["images_per_run", "runs_per_person", "queue_length",
                                                 "gpu_memory_headroom_gb"]
    assert any("Server memory" in c.value for c in at.caption)


def test_classroom_page_for_an_admin_login_with_the_queue_and_cancel(tmp_path, monkeypatch):
    lab_toml(tmp_path, monkeypatch, login=True, admins=["lecturer@example.org"])
    student = page("pages/classroom.py", user={"is_logged_in": True, "email": "student@example.org"},
                   secrets={"auth": AUTH})
    assert not student.metric and "This page is for the lecturer" in student.info[0].value
    queue = shared_queue()
    run = queue.submit("login:student@example.org", 8, label="*a* <b>prompt</b>")
    try:
        at = page("pages/classroom.py", user={"is_logged_in": True, "email": "Lecturer@example.org"},
                  secrets={"auth": AUTH})
        assert not at.exception
        table = at.dataframe[0].value
        row = table[table["Run"] == run.number].iloc[0]
        # The prompt is data in a table cell, not Markdown: shown exactly as typed.
        assert row["Prompt"] == "*a* <b>prompt</b>" and row["Person"] == "login:student@example.org"
        at.number_input[0].set_value(run.number)
        at = at.button[0].click().run()
        assert run.cancelled and f"Run {run.number} is cancelled" in at.success[0].value
    finally:
        run.close()


def test_a_broken_config_stops_the_page_with_its_fix(tmp_path, monkeypatch):
    lab_toml(tmp_path, monkeypatch, images_per_run=0)
    at = page("pages/home.py")
    assert "[classroom] images_per_run = 0; it must be an integer >= 1" in at.error[0].value
