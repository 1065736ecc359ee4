"""What "readable" means for a page in a real browser, measured from what Chromium drew (tests/test_e2e_layout.py).

Streamlit draws Altair charts with vega-embed as SVG (below 2,000 points per dataset), so the rendered marks carry
Vega's roles: `g.role-title`, `g.role-axis-title`, `g.role-axis-label`, `g.role-legend-label`. For every chart in
view (not inside a closed expander):
- the plot (the extent of its grid lines, else of its marks; all panels of a facet together) is at least
  MIN_CHART_PX tall;
- the title and the axis titles lie inside the chart's element (a title Vega places above the top is clipped);
- every label of every axis is drawn: Vega hides labels it finds overlapping (opacity 0), which leaves categories
  of a nominal axis unnamed, unless the page's caption states a deliberate "top k";
- no title, axis label or legend label is cut short with an ellipsis (Vega's limits).
For every table (st.dataframe's grid, st.table): every column in view without scrolling sideways, unless the table
deliberately wraps. And the main area never scrolls sideways.
"""

from __future__ import annotations

from pathlib import Path

MIN_CHART_PX = 150

# Runs in the page: a list of problems, each a sentence naming the chart (its title) or the table (its columns).
HELPERS_JS = r"""
  const NUMBER = /^[-+\u2212]?[\d.,\s]*\d[\d.,\s]*(e[-+\u2212]?\d+)?[%kMGµmn]?$/i;
  // The plot's height: the vertical extent of the grid lines (all panels of a facet together), else of the marks.
  const plotHeight = (chart, svg) => {
    const extent = rects => rects.length ? Math.max(...rects.map(r => r.bottom)) - Math.min(...rects.map(r => r.top))
                                         : 0;
    const grid = [...chart.querySelectorAll(".role-axis-grid line, .role-axis-grid path")]
      .map(e => e.getBoundingClientRect());
    const marks = [...chart.querySelectorAll(".role-mark > *")].map(e => e.getBoundingClientRect())
      .filter(r => r.height > 0 || r.width > 0);
    return Math.max(extent(grid), extent(marks)) || svg.getBoundingClientRect().height;
  };
"""

LAYOUT_PROBLEMS_JS = """(minChartPx) => {
"""+HELPERS_JS+"""  const problems = [];
  const shown = e => !e.closest("details:not([open])") && e.getClientRects().length > 0;
  const main = document.querySelector("[data-testid='stMain']");
  if (main && main.scrollWidth > main.clientWidth + 1)
    problems.push(`the main area scrolls sideways (${main.scrollWidth} px of content in ${main.clientWidth} px)`);
  if (document.documentElement.scrollWidth > document.documentElement.clientWidth + 1)
    problems.push(`the page scrolls sideways (${document.documentElement.scrollWidth} px)`);
  const captions = [...document.querySelectorAll("[data-testid='stCaptionContainer']")].map(c => c.innerText);
  const statesTopK = /\\btop \\d+\\b/i.test(captions.join(" "));
  for (const chart of document.querySelectorAll("[data-testid='stVegaLiteChart']")) {
    if (!shown(chart)) continue;
    const svg = chart.querySelector("svg.marks");
    const titleText = [...chart.querySelectorAll(".role-title-text text, .role-title text")].map(t => t.textContent)
      .join(" ") || "(untitled)";
    const name = `chart '${titleText.slice(0, 80)}'`;
    if (!svg) { problems.push(`${name}: not drawn as SVG (canvas or not rendered)`); continue; }
    const box = chart.getBoundingClientRect();
    const plot = plotHeight(chart, svg);
    if (plot < minChartPx) problems.push(`${name}: its plot is ${Math.round(plot)} px tall (< ${minChartPx})`);
    // A text's box includes the font's ascent and descent: it counts as clipped when a quarter of it is outside.
    const visible = r => Math.max(0, Math.min(r.bottom, box.bottom) - Math.max(r.top, box.top)) *
                         Math.max(0, Math.min(r.right, box.right) - Math.max(r.left, box.left)) /
                         Math.max(1, r.width * r.height);
    for (const t of chart.querySelectorAll(".role-title text, .role-axis-title text")) {
      if (t.textContent && visible(t.getBoundingClientRect()) < 0.75)
        problems.push(`${name}: '${t.textContent}' is outside the chart's bounds (clipped)`);
    }
    for (const axis of chart.querySelectorAll("g.role-axis")) {
      const labels = [...axis.querySelectorAll(".role-axis-label text")];
      const hidden = labels.filter(t => t.getAttribute("opacity") === "0" || t.style.opacity === "0" ||
                                        getComputedStyle(t).opacity === "0");
      // Numbers (a quantitative axis) may be thinned out; categories (names) may not.
      const categorical = labels.some(t => t.textContent && !NUMBER.test(t.textContent.trim()));
      if (hidden.length && categorical && !statesTopK) {
        const axisTitle = axis.querySelector(".role-axis-title text")?.textContent || "an axis";
        problems.push(`${name}: ${hidden.length} of ${labels.length} labels of ${axisTitle} are hidden (overlap)`);
      }
      for (const t of labels)
        if (t.textContent.includes("…")) problems.push(`${name}: axis label '${t.textContent}' is cut short`);
    }
    for (const t of chart.querySelectorAll(".role-title text"))
      if (t.textContent.includes("…")) problems.push(`${name}: its title is cut short: '${t.textContent}'`);
    for (const t of chart.querySelectorAll(".role-legend-label text, .role-legend-title text"))
      if (t.textContent.includes("…")) problems.push(`${name}: legend label '${t.textContent}' is cut short`);
  }
  for (const grid of document.querySelectorAll("[data-testid='stDataFrame']")) {
    if (!shown(grid)) continue;
    const scroller = grid.querySelector(".dvn-scroller");
    if (scroller && scroller.scrollWidth > scroller.clientWidth + 1) {
      const heads = [...grid.querySelectorAll("[role='columnheader']")].map(h => h.innerText).join(", ");
      problems.push(`table (${heads.slice(0, 80)}): ${scroller.scrollWidth} px of columns in ` +
                    `${scroller.clientWidth} px: some need sideways scrolling`);
    }
  }
  for (const table of document.querySelectorAll("[data-testid='stTable']")) {
    if (!shown(table)) continue;
    const el = table.querySelector("table"), wrapper = table.firstElementChild || table;
    if (el && el.scrollWidth > wrapper.clientWidth + 1 && getComputedStyle(el).whiteSpace === "nowrap")
      problems.push(`table: ${el.scrollWidth} px wide in ${wrapper.clientWidth} px`);
  }
  return problems;
}"""


def layout_problems(page) -> list[str]:
    return page.evaluate(LAYOUT_PROBLEMS_JS, MIN_CHART_PX)


def chart_heights(page) -> list[tuple[str, int, int]]:
    """(title, drawing's height, plot's height in px) of every chart in view: what the report of a run quotes."""
    return page.evaluate("""() => {""" + HELPERS_JS + """
        return [...document.querySelectorAll("[data-testid='stVegaLiteChart']")]
          .filter(c => !c.closest("details:not([open])") && c.querySelector("svg.marks"))
          .map(c => [[...c.querySelectorAll(".role-title text")].map(t => t.textContent).join(" ") || "(untitled)",
                     Math.round(c.querySelector("svg.marks").getBoundingClientRect().height),
                     Math.round(plotHeight(c, c.querySelector("svg.marks")))]); }""")


# True once every chart in view holds its drawing (vega-embed draws after the element appears).
CHARTS_DRAWN_JS = """() => [...document.querySelectorAll("[data-testid='stVegaLiteChart']")]
    .filter(c => !c.closest("details:not([open])")).every(c => c.querySelector("svg.marks, canvas"))"""


def page_screenshot(page, path: Path) -> None:
    """The whole page at the current width: Streamlit scrolls inside its main container, so the window is made as
    tall as the content for the shot, then put back."""
    path.parent.mkdir(parents=True, exist_ok=True)
    size = page.viewport_size
    height = page.evaluate("""() => Math.max(document.documentElement.scrollHeight,
        ...[...document.querySelectorAll('*')].filter(e => e.scrollHeight > e.clientHeight + 1 &&
            ['auto', 'scroll'].includes(getComputedStyle(e).overflowY)).map(e => e.scrollHeight))""")
    page.set_viewport_size({"width": size["width"], "height": int(min(max(height, size["height"]), 16_000))})
    try:
        page.screenshot(path=str(path), full_page=True)
    finally:
        page.set_viewport_size(size)
