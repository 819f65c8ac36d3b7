"""A tiny PDF writer for tests: real PDFs without a PDF library.

    path.write_bytes(pdf_bytes([["Page one", "second line"], None, ["Page three"]]))

Each item is a page: its lines of text (Helvetica, so ASCII), or None for a page
that only draws a rectangle, the way a scanned page has no text layer.
"""

from __future__ import annotations


def pdf_bytes(pages: list[list[str] | None]) -> bytes:
    first_page = 4  # objects 1-3: catalog, page tree, font; then (page, content) pairs
    kids = " ".join(f"{first_page + 2 * i} 0 R" for i in range(len(pages)))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{kids}] /Count {len(pages)} >>".encode(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
    ]
    for index, lines in enumerate(pages):
        content = _text_stream(lines) if lines is not None else b"0 0 1 rg 72 600 200 100 re f"
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            f"/Resources << /Font << /F1 3 0 R >> >> /Contents {first_page + 2 * index + 1} 0 R >>".encode()
        )
        objects.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content))
    return _assemble(objects)


def _text_stream(lines: list[str]) -> bytes:
    shown = b" T* ".join(b"(%s) Tj" % _escape(line) for line in lines)
    return b"BT /F1 12 Tf 14 TL 72 720 Td " + shown + b" ET"


def _escape(text: str) -> bytes:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)").encode("cp1252")


def _assemble(objects: list[bytes]) -> bytes:
    """Header, numbered objects, and the cross-reference table with their byte offsets."""
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)
