"""Reading a rendered HTML report back: what the report tests (unit and AppTest) check it with."""

import base64
import io
import re
from html.parser import HTMLParser

from PIL import Image


class ParsedHTML(HTMLParser):
    """Tags with their attributes, the visible text, and each table as rows of cell texts."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.text_parts: list[str] = []
        self.tables: list[list[list[str]]] = []
        self._cell: list[str] | None = None
        self._in_style = False
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag == "style":
            self._in_style = True
        elif tag == "table":
            self.tables.append([])
        elif tag == "tr" and self.tables:
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "style":
            self._in_style = False
        elif tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data):
        if self._in_style:
            return
        self.text_parts.append(data)
        if self._cell is not None:
            self._cell.append(data)

    @property
    def text(self) -> str:
        return re.sub(r"\s+", " ", "".join(self.text_parts))

    def images(self) -> list[tuple[dict, Image.Image, str]]:
        """(attributes, decoded image, mime) of every <img>; fails on any src that is not a data URI."""
        out = []
        for tag, attrs in self.tags:
            if tag == "img":
                match = re.fullmatch(r"data:(image/(?:png|jpeg));base64,([A-Za-z0-9+/=]+)", attrs.get("src", ""))
                assert match, f"an <img> whose src is not a PNG/JPEG data URI: {attrs.get('src', '')[:80]}"
                im = Image.open(io.BytesIO(base64.b64decode(match[2])))
                im.load()
                out.append((attrs, im, match[1]))
        return out

    def rows_with(self, *cells: str) -> list[list[str]]:
        return [row for table in self.tables for row in table if all(c in row for c in cells)]


def assert_self_contained(doc: ParsedHTML, link: str | None) -> None:
    for tag, attrs in doc.tags:
        assert tag not in ("script", "link", "iframe", "object", "embed", "base"), tag
        for name, value in attrs.items():
            assert not name.startswith("on"), f"an event handler on <{tag}>: {name}"
            if name in ("src", "href", "srcset", "action", "poster", "data"):
                if tag == "a" and name == "href":
                    assert value == link, f"a link other than the page's: {value}"
                else:
                    assert (value or "").startswith("data:image/"), f"<{tag} {name}={value[:60]!r}> loads a file"
    assert sum(1 for tag, attrs in doc.tags if tag == "a") == (1 if link else 0)
    csp = [a["content"] for t, a in doc.tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy"]
    assert csp and "default-src 'none'" in csp[0] and "img-src data:" in csp[0]
