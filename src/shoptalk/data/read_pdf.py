"""PDF documents -> one `Chunk` per page, from the text layer.

    chunks = read_pdf(Path("docs/handbook.pdf"), root=Path("."))

A chunk's `source` is `handbook.pdf#page=3` (1-based, the fragment PDF viewers
open at) and its heading the file's stem: a PDF's text layer does not say which
lines are headings. Long pages are left to the chunking stage. Scanned pages
have no text layer and there is no OCR here; a PDF without any text is an error,
one with some empty pages a warning. Needs pypdf, imported when a PDF is read.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from shoptalk.data.documents import folder_acl, make_chunk, source_path
from shoptalk.errors import MissingExtraError, SourceError
from shoptalk.records import Chunk

logger = logging.getLogger(__name__)

PDF_SUFFIXES = (".pdf",)

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")  # what fonts without a text map emit
_BLANK_LINES = re.compile(r"\n{3,}")
_LIGATURES = str.maketrans({"ﬀ": "ff", "ﬁ": "fi", "ﬂ": "fl", "ﬃ": "ffi", "ﬄ": "ffl", "ﬅ": "st"})
_NO_TEXT = (
    "(a scanned PDF?); OCR is not supported: run it through an OCR tool such as "
    "ocrmypdf first, or export the text from the program that made it"
)


def read_pdf(path: Path, root: Path) -> list[Chunk]:
    """One chunk per page that has text, in page order."""
    pages = _page_texts(path)
    relpath = source_path(path, root)
    acl = folder_acl(path, root)
    chunks = [
        make_chunk(f"{relpath}#page={number}", text, [path.stem], acl)
        for number, text in enumerate(pages, start=1)
        if text
    ]
    empty = [number for number, text in enumerate(pages, start=1) if not text]
    if not chunks:
        found = f"none on any of its {len(pages)} pages" if pages else "no pages"
        raise SourceError(path, None, f"expected a PDF with a text layer, found {found} {_NO_TEXT}")
    if empty:
        shown = ", ".join(map(str, empty[:10])) + (", ..." if len(empty) > 10 else "")
        logger.warning("%s: %d pages have no text layer (scanned?): %s", path, len(empty), shown)
    return chunks


def _page_texts(path: Path) -> list[str]:
    """The cleaned text of every page ("" for a page without text)."""
    try:
        from pypdf import PdfReader
        from pypdf.errors import DependencyError
    except ImportError as err:
        raise MissingExtraError(
            f"{path}: reading PDF documents needs pypdf: pip install pypdf"
        ) from err
    with path.open("rb") as file:
        if b"%PDF-" not in file.read(1024):  # where readers look for the header
            raise SourceError(
                path, None, "expected a PDF document (a %PDF- header), found other data"
            )
    try:
        reader = PdfReader(path)
        if reader.is_encrypted and not reader.decrypt(""):
            found = "a password-protected PDF (save a copy without the password)"
            raise SourceError(path, None, f"expected a readable PDF, found {found}")
        pages = list(reader.pages)
    except DependencyError as err:  # AES encryption, even with an empty password
        raise MissingExtraError(f"{path}: {err}: pip install cryptography") from err
    except SourceError:
        raise
    except Exception as err:  # pypdf raises many kinds of error on damaged files
        found = f"a damaged or truncated one ({_what(err)})"
        raise SourceError(path, None, f"expected a PDF document, found {found}") from err
    texts = []
    for number, page in enumerate(pages, start=1):
        try:
            raw = page.extract_text() or ""
        except Exception as err:  # one damaged page: name it rather than lose the file quietly
            found = f"text that cannot be extracted ({_what(err)})"
            raise SourceError(
                f"{path}#page={number}", None, f"expected a PDF page, found {found}"
            ) from err
        texts.append(_clean(raw))
    return texts


def _what(err: Exception) -> str:
    return f"{type(err).__name__}: {err}" if str(err) else type(err).__name__


def _clean(raw: str) -> str:
    """Trailing spaces, stray control characters and ligatures out; at most one blank line."""
    text = _CONTROL.sub("", raw.replace("\r\n", "\n").replace("\r", "\n").translate(_LIGATURES))
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    return _BLANK_LINES.sub("\n\n", text).strip()
