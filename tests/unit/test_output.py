"""app.report.Output: a page writes each result once; the call draws it (Streamlit, mocked here) and records the same
value in the report. A setting chosen in a fragment reaches the report's settings, also when only the fragment reruns.
"""

from __future__ import annotations

from unittest import mock

import pandas as pd

from app import report as ui_report
from core.analysis.stats import Estimate
from core.present.report import Report


def output() -> tuple[ui_report.Output, mock.MagicMock, mock.MagicMock]:
    st, grid = mock.MagicMock(), mock.MagicMock()
    patches = [mock.patch.object(ui_report, "st", st), mock.patch.object(ui_report.ui, "grid", grid)]
    for p in patches:
        p.start()
    return ui_report.Output(Report("A title", "Page")), st, grid


def teardown_function() -> None:
    mock.patch.stopall()


def test_each_call_draws_once_and_records_the_same_value():
    out, st, grid = output()
    estimate = Estimate("Vendi score", 3.25, 2.5, 4.0, 16)
    out.heading("Statistics").caption("**Run:** a `prompt`").text("**A reading**")
    out.numbers([estimate], caption="A note.", table=pd.DataFrame({"value": [3.25]}))
    out.images([b"jpeg"], ["seed 0"], "1 generated image", per_row=4)
    st.subheader.assert_called_once_with("Statistics")
    st.caption.assert_has_calls([mock.call("**Run:** a `prompt`"), mock.call("A note.")])
    st.markdown.assert_called_once_with("**A reading**")
    st.text.assert_called_once_with("1 generated image")  # titles are plain text: they may name a class
    st.table.assert_called_once()
    grid.assert_called_once_with([b"jpeg"], ["seed 0"], per_row=4)
    kinds = [type(block).__name__ for _, block in out.report.blocks]
    assert kinds == ["_Heading", "_Text", "_Text", "_Numbers", "_Images"]
    md = out.report.to_markdown()
    for shown in ("## Statistics", "**Run:** a `prompt`", "**A reading**", "3.250 [2.500, 4.000]", "A note."):
        assert shown in md, shown


def test_report_only_blocks_draw_nothing():
    out, st, grid = output()
    out.note("Only in the report.").heading("Report heading", on_page=False)
    out.table(pd.DataFrame({"a": [1]}), "Counts", on_page=False).settings({"n": 4})
    assert not st.method_calls and not grid.called
    assert "Only in the report." in out.report.to_markdown() and "Counts" in out.report.to_markdown()


def test_a_setting_chosen_in_a_fragment_follows_into_the_settings_block():
    out, _, _ = output()
    out.setting("projection", "pca")  # the full run: the fragment runs before the page's settings are recorded
    out.settings({"request": "a photo of a tench"})
    out.note("after the settings")
    md = out.report.to_markdown()
    assert md.index("request") < md.index("projection") < md.index("after the settings") and "pca" in md
    out.setting("projection", "tsne")  # the fragment reruns alone: the block is replaced where it stands
    md = out.report.to_markdown()
    assert "tsne" in md and "pca" not in md
    assert md.index("projection") < md.index("after the settings") and md.count("projection") == 1
