"""HTML pages -> one `Chunk` per heading section, main text only.

    chunks = read_html(Path("docs/returns.html"), root=Path("."))

Keeps what a reader of the page would call its content. Dropped: scripts and
styles, navigation (`nav`, role=navigation, menus), the page's header and footer,
asides, forms, and anything hidden; when the page marks its `<main>`, only that.
A `header` inside an article or section is kept: it holds that article's title.
h1-h6 make the heading path as in Markdown, `<title>` standing in for a missing
h1; tables become `| a | b |` rows and list items `- ` lines. Groups come from
`<meta name="groups" content="hr, legal">` (or "acl"), else from the folder.

The standard library's parser is enough, and it forgives the broken HTML that
real sites serve (unclosed `<p>` and `<li>`, stray end tags).
"""

from __future__ import annotations

import codecs
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import NamedTuple

from shoptalk.data.documents import (
    decode_text,
    folder_acl,
    join_blocks,
    make_chunk,
    open_heading,
    source_path,
)
from shoptalk.data.tables import markdown_table
from shoptalk.errors import SourceError
from shoptalk.records import Chunk

HTML_SUFFIXES = (".html", ".htm")

_SKIP_TAGS = {"script", "style", "noscript", "template", "nav", "header", "footer", "aside"}
_SKIP_TAGS |= {"form", "button", "select", "svg", "iframe", "object", "canvas", "dialog"}
_SKIP_ROLES = {"navigation", "menu", "menubar", "banner", "contentinfo", "complementary", "search"}
_SECTIONING = {"article", "section", "main"}
_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source"}
_VOID |= {"track", "wbr"}
_BLOCKS = {"address", "article", "blockquote", "caption", "dd", "details", "div", "dl", "dt"}
_BLOCKS |= {"fieldset", "figcaption", "figure", "hr", "legend", "main", "p", "section", "summary"}
_HEADING = re.compile(r"h([1-6])")
_HIDDEN_STYLE = re.compile(r"display\s*:\s*none|visibility\s*:\s*hidden")
_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([\w.:-]+)""", re.IGNORECASE)
# What browsers decode these labels as (the WHATWG Encoding standard).
_CHARSET_AS = {"iso8859-1": "cp1252", "ascii": "cp1252", "gb2312": "gb18030", "gbk": "gb18030"}


def read_html(path: Path, root: Path) -> list[Chunk]:
    """One chunk per non-empty heading section of the page's main text."""
    page = _parsed(path)
    relpath = source_path(path, root)
    acl = page.groups if page.groups is not None else folder_acl(path, root)
    return _chunks(page.events, page.title, relpath, acl)


def html_groups(path: Path) -> list[str] | None:
    """The groups a page's `<meta name="groups">` names; None when it has none."""
    return _parsed(path).groups


def _parsed(path: Path) -> _Page:
    page = _Page()
    page.feed(_html_text(path))
    page.close()
    if page.groups == []:
        # Declared but empty: who may read the page cannot be told; never public by accident.
        message = '<meta name="groups"> names no group: list the groups that may read this page'
        raise SourceError(path, None, message + ", or remove the tag (see docs/permissions.md)")
    return page


def _html_text(path: Path) -> str:
    """The page's text, decoded as its `<meta charset>` says when that is not UTF-8."""
    data = path.read_bytes()
    match = _CHARSET.search(data[:4096])
    codec = _codec(match.group(1).decode("ascii")) if match else None
    if codec is None or codec.startswith("utf") or data.startswith(codecs.BOM_UTF8):
        return decode_text(path, "HTML document")
    try:
        text = data.decode(codec)
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        expected = f"expected text in the charset the page declares ({match.group(1).decode()})"
        raise SourceError(path, line, f"{expected}, found bytes that are not") from err
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _codec(label: str) -> str | None:
    try:
        name = codecs.lookup(label).name
    except LookupError:
        return None  # an unknown label: let decode_text try UTF-8 and GB18030
    return _CHARSET_AS.get(name, name)


class _Event(NamedTuple):
    level: int  # 1-6 for a heading, 0 for a block of text
    text: str
    run: str | None
    line: int
    in_main: bool


def _chunks(events: list[_Event], title: str, relpath: str, acl: list[str]) -> list[Chunk]:
    """Events -> chunks, one per heading section with text, as for Markdown."""
    if any(event.in_main for event in events):
        events = [event for event in events if event.in_main]
    top = [title] if title and not any(event.level == 1 for event in events) else []
    sections: list[tuple[list[str], str, list[_Event]]] = [(top, title if top else "", [])]
    stack: list[tuple[int, str]] = []
    for event in events:
        if event.level:
            stack = open_heading(stack, event.level, event.text)
            sections.append((top + [t for _, t in stack], event.text, []))
        else:
            sections[-1][2].append(event)
    chunks = []
    for headings, heading, blocks in sections:
        if not blocks:
            continue
        text = join_blocks([(block.text, block.run) for block in blocks])
        source = f"{relpath}#{heading}" if heading else f"{relpath}:{blocks[0].line}"
        chunks.append(make_chunk(source, text, headings, acl))
    return chunks


class _Table:
    def __init__(self) -> None:
        self.rows: list[list[str]] = []
        self.cell: list[str] | None = None
        self.colspan = 1
        self.caption: list[str] = []


class _Page(HTMLParser):
    """Collects the page's headings and blocks of text as `_Event`s, in order.

    Subclassing is how `html.parser` is meant to be used: it calls these handlers.
    """

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.events: list[_Event] = []
        self.title = ""
        self.groups: list[str] | None = None
        self._title: list[str] | None = None
        self._skip: list = []  # [tag, depth] of the dropped element we are inside
        self._main: list = []  # [tag, depth] of the <main> element we are inside
        self._sectioning = 0
        self._heading: tuple[int, list[str], int] | None = None
        self._tables: list[_Table] = []
        self._lists: list[list] = []  # [tag, items so far] per open ul/ol
        self._pre = 0
        self._text: list[str] = []
        self._line = 0
        self._prefix = ""

    # --- the parser's callbacks -----------------------------------------------------

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._skip:
            self._skip[1] += tag == self._skip[0]
            return
        attributes = {name: value or "" for name, value in attrs}
        if tag == "meta":
            self._meta(attributes)
        if tag in _VOID:
            if tag in ("br", "hr"):
                self._break()
            return
        if self._dropped(tag, attributes):
            self._skip = [tag, 1]
            return
        if self._main:
            self._main[1] += tag == self._main[0]
        elif tag == "main" or attributes.get("role") == "main":
            self._break()
            self._main = [tag, 1]
        self._sectioning += tag in _SECTIONING
        self._open(tag, attributes)

    def handle_endtag(self, tag: str) -> None:
        if self._skip:
            self._skip[1] -= tag == self._skip[0]
            if self._skip[1] == 0:
                self._skip = []
            return
        self._close(tag)
        self._sectioning -= tag in _SECTIONING and self._sectioning > 0
        if self._main and tag == self._main[0]:
            self._main[1] -= 1
            if self._main[1] == 0:
                self._break()
                self._main = []

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        if self._title is not None:
            self._title.append(data)
        elif self._heading is not None:
            self._heading[1].append(data)
        elif self._tables and self._tables[-1].cell is not None:
            self._tables[-1].cell.append(data)
        elif self._tables:
            self._tables[-1].caption.append(data)  # <caption>, or stray text between cells
        else:
            if not self._text and data.strip():
                self._line = self.getpos()[0]
            self._text.append(data)

    def close(self) -> None:
        super().close()
        self._break()

    # --- elements -------------------------------------------------------------------

    def _dropped(self, tag: str, attributes: dict[str, str]) -> bool:
        if tag == "header" and self._sectioning:
            return False  # an article's own header: its title, not the site's banner
        if tag in _SKIP_TAGS or attributes.get("role") in _SKIP_ROLES:
            return True
        hidden = "hidden" in attributes or attributes.get("aria-hidden") == "true"
        return hidden or bool(_HIDDEN_STYLE.search(attributes.get("style", "")))

    def _meta(self, attributes: dict[str, str]) -> None:
        if attributes.get("name", "").lower() in ("groups", "acl"):
            names = [name.strip() for name in attributes.get("content", "").split(",")]
            self.groups = list(dict.fromkeys((self.groups or []) + [n for n in names if n]))

    def _open(self, tag: str, attributes: dict[str, str]) -> None:
        heading = _HEADING.fullmatch(tag)
        if tag == "title" and not self.title:
            self._title = []
        elif heading:
            self._break()
            self._heading = (int(heading.group(1)), [], self.getpos()[0])
        elif tag == "table":
            self._break()
            self._tables.append(_Table())
        elif tag in ("td", "th") and self._tables:
            self._end_cell()
            self._tables[-1].cell = []
            self._tables[-1].colspan = _span(attributes.get("colspan"))
        elif tag == "tr" and self._tables:
            self._end_cell()
            self._tables[-1].rows.append([])
        elif tag in ("ul", "ol"):
            self._break()
            self._lists.append([tag, 0])
        elif tag == "li":
            self._break()
            self._list_item()
        elif tag == "pre":
            self._break()
            self._pre += 1
        elif tag in _BLOCKS:
            self._break()

    def _close(self, tag: str) -> None:
        if tag == "title" and self._title is not None:
            self.title = " ".join("".join(self._title).split())
            self._title = None
        elif _HEADING.fullmatch(tag) and self._heading is not None:
            level, parts, line = self._heading
            self._heading = None
            if text := " ".join("".join(parts).split()):
                self._emit(level, text, None, line)
        elif tag == "table" and self._tables:
            self._end_table()
        elif tag in ("td", "th") and self._tables:
            self._end_cell()
        elif tag in ("ul", "ol") and self._lists:
            self._break()
            self._lists.pop()
            self._prefix = ""
        elif tag == "pre" and self._pre:
            self._break()
            self._pre -= 1
        elif tag in _BLOCKS or tag == "li":
            self._break()

    def _list_item(self) -> None:
        if not self._lists:  # an <li> outside any list: still an item
            self._lists.append(["ul", 0])
        self._lists[-1][1] += 1
        tag, count = self._lists[-1]
        marker = f"{count}." if tag == "ol" else "-"
        self._prefix = "  " * (len(self._lists) - 1) + marker + " "

    def _end_cell(self) -> None:
        table = self._tables[-1]
        if table.cell is None:
            return
        if not table.rows:
            table.rows.append([])
        text = " ".join("".join(table.cell).split())
        table.rows[-1] += [text] + [""] * (table.colspan - 1)
        table.cell = None

    def _end_table(self) -> None:
        self._end_cell()
        table = self._tables.pop()
        caption = " ".join("".join(table.caption).split())
        if self._tables and self._tables[-1].cell is not None:  # a table in a cell: its text
            words = [caption] + [cell for row in table.rows for cell in row]
            self._tables[-1].cell.append(" " + " ".join(w for w in words if w))
            return
        line = self.getpos()[0]
        if caption:
            self._emit(0, caption, None, line)
        if rows := markdown_table(table.rows):
            self._emit(0, "\n".join(rows), None, line)

    # --- text -----------------------------------------------------------------------

    def _break(self) -> None:
        """End the paragraph being collected; inside a heading or cell, just a space."""
        if self._heading is not None:
            self._heading[1].append(" ")
        elif self._tables and self._tables[-1].cell is not None:
            self._tables[-1].cell.append(" ")
        elif self._text:
            raw = "".join(self._text)
            text = raw.strip("\n").rstrip() if self._pre else " ".join(raw.split())
            self._text = []
            if text.strip():
                run = "list" if self._prefix else None
                self._emit(0, self._prefix + text, run, self._line)
                self._prefix = " " * len(self._prefix)  # a second paragraph in the item

    def _emit(self, level: int, text: str, run: str | None, line: int) -> None:
        self.events.append(_Event(level, text, run, line, bool(self._main)))


def _span(value: str | None) -> int:
    try:
        return min(max(int(value or 1), 1), 100)
    except ValueError:
        return 1
