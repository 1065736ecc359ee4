"""app.ui.working / ui.in_background: long core calls show a progress bar and a Cancel button, then both go."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest


def script():
    import time

    import streamlit as st

    from app import ui

    value = ui.in_background(lambda: (time.sleep(0.6), 42)[1], "Projecting 3 points with t-SNE")
    st.text(f"result {value}")
    try:
        ui.in_background(lambda: 1 / 0, "Failing")
    except ZeroDivisionError as exc:
        st.text(f"raised {type(exc).__name__}")
    with ui.working("Embedding") as progress:
        progress(3, 4)
    st.text("after")


def test_background_work_returns_its_value_raises_its_error_and_leaves_no_bar_or_button():
    at = AppTest.from_function(script, default_timeout=60).run()
    assert not at.exception
    assert [t.value for t in at.text] == ["result 42", "raised ZeroDivisionError", "after"]
    assert not at.button  # every Cancel button went with its work
