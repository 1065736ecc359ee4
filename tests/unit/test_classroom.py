"""core.pipeline.classroom: the lecturer's settings file, who is who (one browser = one person), who is the lecturer."""

from __future__ import annotations

import os

import pytest

from core.pipeline.classroom import (
    ClassroomConfigError,
    Limits,
    about,
    is_admin,
    load_settings,
    person_from,
)


def xsrf_cookie(token: bytes, mask: bytes) -> str:
    """Streamlit's v2 XSRF cookie: "2|mask|token xor mask|timestamp" (a fresh mask on every response)."""
    masked = bytes(b ^ mask[i % len(mask)] for i, b in enumerate(token))
    return f"2|{mask.hex()}|{masked.hex()}|1700000000"


def test_defaults_without_a_file(tmp_path, monkeypatch):
    monkeypatch.delenv("DDL_CONFIG", raising=False)
    settings = load_settings(tmp_path / "absent.toml")
    assert settings.limits == Limits() and not settings.login and settings.admins == ()


def test_a_file_sets_limits_login_and_admins(tmp_path):
    path = tmp_path / "lab.toml"
    path.write_text('[classroom]\nimages_per_run = 64\nruns_per_person = 1\nqueue_length = 30\n'
                    'gpu_memory_headroom_gb = 2.5\nlogin = true\nadmins = ["Lecturer@Example.org"]\n'
                    'admin_token = "a-long-enough-token"\n')
    s = load_settings(path)
    assert s.limits == Limits(64, 1, 30, 2.5) and s.login and s.admins == ("lecturer@example.org",)
    assert is_admin(s, email="lecturer@example.org") and is_admin(s, token="a-long-enough-token")
    assert not is_admin(s, email="student@example.org") and not is_admin(s, token="a-long-enough-tokeX")
    assert not is_admin(s)


@pytest.mark.parametrize("body, message", [
    ("images_per_run = 0", "images_per_run = 0; it must be an integer >= 1"),
    ("queue_length = 2.5", "queue_length = 2.5; it must be an integer >= 1"),
    ("login = \"yes\"", "login = 'yes'; it must be true or false"),
    ("admins = \"me@example.org\"", "admins must be a list of e-mail addresses"),
    ("admin_token = \"short\"", "admin_token is 5 characters; use at least 12"),
    ("image_per_run = 3", "unknown key image_per_run in [classroom]"),
])
def test_a_wrong_value_names_the_key_and_the_fix(tmp_path, body, message):
    path = tmp_path / "lab.toml"
    path.write_text(f"[classroom]\n{body}\n")
    with pytest.raises(ClassroomConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_settings(path)


def test_ddl_config_naming_a_missing_file_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("DDL_CONFIG", str(tmp_path / "nope.toml"))
    with pytest.raises(ClassroomConfigError, match="DDL_CONFIG names .*nope.toml, which is not a file"):
        load_settings()
    assert os.environ["DDL_CONFIG"]


def test_one_browser_is_one_person_whatever_mask_its_cookie_has():
    token, other = bytes(range(32)), bytes(range(1, 33))
    tab1 = person_from(cookies={"_streamlit_xsrf": xsrf_cookie(token, b"\x01\x02\x03\x04")}, session_id="s1")
    tab2 = person_from(cookies={"_streamlit_xsrf": xsrf_cookie(token, b"\xaa\xbb\xcc\xdd")}, session_id="s2")
    stranger = person_from(cookies={"_streamlit_xsrf": xsrf_cookie(other, b"\x01\x02\x03\x04")}, session_id="s1")
    assert tab1 == tab2 and tab1 != stranger and tab1.startswith("browser:")
    assert token.hex() not in tab1  # the token (a secret) is never the key itself
    # A login wins over the browser; no cookie at all falls back to the session.
    assert person_from(email=" Student@Example.org ", cookies={"_streamlit_xsrf": "x"}) == "login:student@example.org"
    assert person_from(session_id="s1") != person_from(session_id="s2")
    assert person_from(cookies={"_streamlit_xsrf": "2|zz|yy|1"}, session_id="s1") == person_from(session_id="s1")


def test_waits_read_as_a_person_says_them():
    assert [about(s) for s in (None, 3, 22, 59, 61, 130)] == [
        "an unknown time", "a few seconds", "about 20 seconds", "about 1 minute", "about 1 minute",
        "about 2 minutes"]
