"""Markdown and plain-text documents -> one `Chunk` per heading section.

    chunks = read_document(Path("docs/returns.md"), root=Path("."))

Also home of the small helpers every reader shares: decoding a user's text file
without mangling it, naming a file relative to the project, stable ids, and the
section helpers the HTML, PDF and DOCX readers build their chunks with.
"""

from __future__ import annotations

import codecs
import fnmatch
import hashlib
import re
from pathlib import Path

import yaml

from shoptalk.errors import SourceError
from shoptalk.records import Chunk

DOCUMENT_SUFFIXES = (".md", ".markdown", ".txt")

# A paragraph (or a whole table) of a document and the run it belongs to ("list";
# None when alone): blocks of one run are on adjacent lines, others a blank line apart.
Block = tuple[str, str | None]

# C0 control characters that never occur in real text (tab, newlines, form feed and
# ESC are allowed). A file full of them decoded "successfully" as GB18030 is binary.
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1a\x1c-\x1f]")
_HEADING = re.compile(r"^ {0,3}(#{1,6})(?=[ \t]|$)(.*)$")
_CLOSING_HASHES = re.compile(r"(?:^|[ \t]+)#+$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")

# Word and Excel 97-2003 files, and *encrypted* .docx/.xlsx files, are OLE
# compound files rather than zip archives; they all start with these bytes.
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


def decode_text(path: Path, what: str = "text document") -> str:
    """The text of `path` with newlines normalized to "\\n".

    Tries UTF-8 (with or without BOM), then GB18030 (a superset of GBK, what Excel
    on a Chinese Windows writes); UTF-16 is taken when it carries a BOM. Never
    decodes with replacement characters: a file that is none of these is an error.
    """
    text = _decode(path, what, path.read_bytes())
    if match := _CONTROL.search(text):
        raise _binary(path, what, f"control character {match.group()!r}")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _decode(path: Path, what: str, data: bytes) -> str:
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as err:
            raise _binary(path, what, "invalid UTF-16 after a UTF-16 byte-order mark") from err
    if (nul := data.find(b"\x00")) >= 0:
        raise _binary(path, what, f"a NUL byte at offset {nul}")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        utf8_error = err
    line = data.count(b"\n", 0, utf8_error.start) + 1
    if _damaged_utf8(data, utf8_error):
        found = f"a byte that is not UTF-8 at line {line}"
        why = "read as GB18030 instead, the rest of the file would be garbled"
        raise SourceError(path, line, f"expected UTF-8 text, found {found} ({why})")
    try:
        return data.decode("gb18030")
    except UnicodeDecodeError:
        found = f"bytes that are neither UTF-8 nor GB18030 text at line {line}"
        raise _binary(path, what, found) from None


def _damaged_utf8(data: bytes, err: UnicodeDecodeError) -> bool:
    """Many valid multi-byte characters before the bad byte: UTF-8 damaged in one place.

    GBK text fails as UTF-8 within its first few Chinese characters, so a long
    valid run means falling back to GB18030 would turn the whole file into mojibake.
    """
    before = data[: err.start].decode("utf-8", errors="ignore")
    return sum(ord(char) > 0x7F for char in before) >= 8


def _binary(path: Path, what: str, found: str) -> SourceError:
    return SourceError(path, None, f"expected a UTF-8 {what}, found binary data ({found})")


def source_path(path: Path, root: Path) -> str:
    """`path` relative to `root` as POSIX (how `source` names it), else as given."""
    for candidate, base in ((path, root), (path.resolve(), root.resolve())):
        try:
            return candidate.relative_to(base).as_posix()
        except ValueError:
            continue
    return path.as_posix()


def content_id(*parts: str) -> str:
    """A short id that changes exactly when one of `parts` changes."""
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()
    return digest[:16]


def report(error: SourceError, errors: list[SourceError] | None) -> None:
    """Raise `error`, or collect it when the caller chose skip-and-report."""
    if errors is None:
        raise error
    errors.append(error)


def read_document(path: Path, root: Path) -> list[Chunk]:
    """One chunk per non-empty section; long sections are left to the chunking stage."""
    text = decode_text(path)
    relpath = source_path(path, root)
    lines = text.split("\n")
    is_markdown = path.suffix.lower() in (".md", ".markdown")
    meta, body_start = _front_matter(path, lines) if is_markdown else ({}, 0)
    acl = _acl(path, root, meta, lines)
    chunks = []
    for headings, title, first_line, body in _sections(lines, body_start, is_markdown):
        start, end = _trim_blank(body)
        if start == end:
            continue
        section_text = "\n".join(body[start:end])
        source = f"{relpath}#{title}" if title else f"{relpath}:{first_line + start}"
        chunks.append(
            Chunk(
                id=content_id(source, section_text),
                text=section_text,
                source=source,
                headings=headings,
                acl=acl,
            )
        )
    return chunks


def markdown_groups(path: Path) -> list[str] | None:
    """The groups a Markdown document's front matter names; None when it names none."""
    lines = decode_text(path).split("\n")
    return front_matter_groups(path, _front_matter(path, lines)[0], lines)


def _front_matter(path: Path, lines: list[str]) -> tuple[dict, int]:
    """Parsed `---` front matter and the index of the first body line."""
    if not lines or lines[0].strip() != "---":
        return {}, 0
    end = next((i for i in range(1, len(lines)) if lines[i].strip() in ("---", "...")), None)
    if end is None:  # a lone `---` on line 1 is a thematic break, not front matter
        return {}, 0
    try:
        meta = yaml.safe_load("\n".join(lines[1:end]))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = mark.line + 2 if mark is not None else 1
        problem = getattr(err, "problem", None) or str(err)
        expected = "expected YAML front matter between '---' lines"
        raise SourceError(path, line, f"{expected}, found invalid YAML: {problem}") from err
    if meta is None:
        return {}, end + 1
    if not isinstance(meta, dict):
        raise SourceError(
            path, 2, f"expected front matter of 'key: value' lines, found {type(meta).__name__}"
        )
    return meta, end + 1


def _acl(path: Path, root: Path, meta: dict, lines: list[str]) -> list[str]:
    """The groups the file names itself, else its folder: the reader's label only.

    A reader does not see `rag.access` nor `rag.folder_groups`, so this is not
    who may read the document: the index and the dataset replace it with
    `sources.source_groups` (docs/permissions.md: the project's groups bound the
    document, its front matter only narrows them).
    """
    declared = front_matter_groups(path, meta, lines)
    return declared if declared is not None else folder_acl(path, root)


# Front matter keys that look like a restriction but are not read as one: a
# misspelt `group:` must not leave a document open to every key.
_NOT_GROUP_KEYS = {"group", "acls", "access", "allowed_groups", "roles", "permissions"}


def front_matter_groups(path: Path, meta: dict, lines: list[str]) -> list[str] | None:
    """The groups a document's front matter names (`groups:`, `acl:`); None when it names none.

    A key that is there but names no group (`groups: []`), names something that
    is not a group name, or is misspelt is an error: the document's readers
    cannot be told, and it must not become readable by every key by accident.
    """

    def line_of(key: str) -> int:
        return next((i + 1 for i, raw in enumerate(lines) if raw.startswith(f"{key}:")), 1)

    for key in meta:
        lowered = str(key).lower()
        if lowered in _NOT_GROUP_KEYS or (lowered in ("groups", "acl") and key != lowered):
            raise SourceError(
                path,
                line_of(str(key)),
                f"front matter key {key!r} is not read: "
                "write 'groups: [name, ...]' to say which groups may read this document",
            )
    present = [key for key in ("groups", "acl") if key in meta]
    if not present:
        return None
    names: list[str] = []
    for key in present:
        value = meta[key]
        items = value if isinstance(value, list) else [value]
        if not all(isinstance(item, str | int) for item in items if item is not None):
            found = type(value).__name__ if not isinstance(value, list) else "a nested value"
            raise SourceError(
                path, line_of(key), f"expected '{key}' as a list of group names, found {found}"
            )
        names += _as_names(value)
    if not names:
        raise SourceError(
            path,
            line_of(present[0]),
            f"'{present[0]}' names no group: list the groups that "
            "may read this document, or remove the key (see docs/permissions.md)",
        )
    return list(dict.fromkeys(names))


def document_groups(
    declared: list[str] | None,
    name: str,
    folder: list[str],
    access: dict[str, list[str]],
    folder_groups: bool,
) -> list[str]:
    """Who may read a document (none = every key), by the rule of docs/permissions.md.

    The project's groups come from every `rag.access` pattern its path `name`
    matches, else (with `rag.folder_groups`) its `folder`. The groups the
    document declares itself may only narrow them: a declared group the project
    does not give is dropped (an author cannot open a file wider than the
    project's owner set), and when none is left the project's groups stand.
    """
    groups = [
        g for pattern, names in access.items() if fnmatch.fnmatch(name, pattern) for g in names
    ]
    if not groups and folder_groups:
        groups = folder
    if declared is not None:
        narrowed = [g for g in declared if g in groups] if groups else declared
        groups = narrowed or groups
    return list(dict.fromkeys(groups))


def folder_acl(path: Path, root: Path) -> list[str]:
    """The document's folder relative to the project root, as its one group (none at the root)."""
    try:
        folder = path.parent.resolve().relative_to(root.resolve())
    except ValueError:
        return []
    return [] if folder == Path() else [folder.as_posix()]


def _as_names(value: object) -> list[str]:
    """A YAML list or a comma-separated string, as clean names."""
    if value is None:
        return []
    items = value if isinstance(value, list) else str(value).split(",")
    return [str(item).strip() for item in items if str(item).strip()]


_Section = tuple[list[str], str, int, list[str]]


def _sections(lines: list[str], start: int, is_markdown: bool) -> list[_Section]:
    """(heading path, own heading, line number of the first body line, body) per section."""
    if not is_markdown:
        return [([], "", start + 1, lines[start:])]
    sections: list[_Section] = [([], "", start + 1, [])]
    stack: list[tuple[int, str]] = []
    fence = ""
    for index in range(start, len(lines)):
        line = lines[index]
        fence = _update_fence(fence, line)
        heading = None if fence or _FENCE.match(line) else _HEADING.match(line)
        if heading is None:
            sections[-1][3].append(line)
            continue
        level = len(heading.group(1))
        title = _CLOSING_HASHES.sub("", heading.group(2).strip()).strip()
        stack = [(lvl, t) for lvl, t in stack if lvl < level] + [(level, title)]
        sections.append(([t for _, t in stack if t], title, index + 2, []))
    return sections


def _update_fence(fence: str, line: str) -> str:
    """The open code fence after `line` ("" when outside one); `#` in code is not a heading."""
    match = _FENCE.match(line)
    if match is None:
        return fence
    marker = match.group(1)
    if not fence:
        return marker
    closes = marker[0] == fence[0] and len(marker) >= len(fence) and not line.strip()[len(marker) :]
    return "" if closes else fence


def _trim_blank(lines: list[str]) -> tuple[int, int]:
    """Indexes [start, end) of `lines` without surrounding blank lines."""
    start, end = 0, len(lines)
    while start < end and not lines[start].strip():
        start += 1
    while end > start and not lines[end - 1].strip():
        end -= 1
    return start, end


# --- helpers of the HTML, PDF and DOCX readers --------------------------------------


def open_heading(stack: list[tuple[int, str]], level: int, title: str) -> list[tuple[int, str]]:
    """The open headings after a level-`level` one: it closes those at its level or deeper."""
    return [(lvl, t) for lvl, t in stack if lvl < level] + [(level, title)]


def join_blocks(blocks: list[Block]) -> str:
    """Blocks as Markdown-like text: a list's items adjacent, paragraphs a blank line apart."""
    parts: list[str] = []
    previous: str | None = None
    for text, run in blocks:
        if parts:
            parts.append("\n" if run is not None and run == previous else "\n\n")
        parts.append(text)
        previous = run
    return "".join(parts)


def make_chunk(source: str, text: str, headings: list[str], acl: list[str]) -> Chunk:
    return Chunk(id=content_id(source, text), text=text, source=source, headings=headings, acl=acl)


def check_office_file(path: Path, expected: str, app: str, suffix: str) -> None:
    """A clear error for the files most often given instead of a .docx/.xlsx."""
    with path.open("rb") as file:
        start = file.read(len(_OLE_MAGIC))
    if start == _OLE_MAGIC:
        found = f"an old {app} 97-2003 file or a password-protected one"
        fix = f"open it in {app} and save it as {suffix} without a password"
        raise SourceError(path, None, f"expected {expected}, found {found} ({fix})")
    if not start.startswith(b"PK"):
        raise SourceError(path, None, f"expected {expected} (a zip archive), found other data")
