from pathlib import Path

import pytest

from shoptalk.data.read_html import read_html
from shoptalk.errors import SourceError

# A real page's furniture around two sections of content: none of the furniture
# (menus, script, site header and footer, sidebar, search form) may reach a chunk.
SHOP_PAGE = """\
<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Returns &amp; refunds | ACME</title>
  <style>body { font-family: sans-serif }</style>
  <script>var tracker = "SCRIPT-TEXT";</script>
</head>
<body>
  <header class="site"><a href="/">ACME-LOGO</a>
    <nav><ul><li><a href="/shop">MENU-SHOP</a></li><li><a href="/blog">MENU-BLOG</a></li></ul></nav>
  </header>
  <div role="navigation"><ol><li>BREADCRUMB</li></ol></div>
  <p>Everything you need to know about sending things back.</p>
  <h2>Claim window</h2>
  <p>You have <strong>30 days</strong>
     from delivery.</p>
  <table>
    <tr><th>plan</th><th>days</th></tr>
    <tr><td>basic</td><td>14</td></tr>
    <tr><td>pro</td><td>30 | extended</td></tr>
  </table>
  <h3>Refund method</h3>
  <ul><li>card: 5 working days<li>voucher: at once</ul>
  <aside>SIDEBAR-RELATED</aside>
  <form><label>SEARCH-FORM</label><input name="q"></form>
  <noscript>NOSCRIPT-TEXT</noscript>
  <p hidden>HIDDEN-TEXT</p>
  <footer>FOOTER-TEXT &copy; ACME</footer>
  <script>console.log("SCRIPT-TEXT-2")</script>
</body>
</html>
"""
FURNITURE = ("SCRIPT", "ACME-LOGO", "MENU", "BREADCRUMB", "SIDEBAR", "SEARCH", "NOSCRIPT")
FURNITURE += ("HIDDEN", "FOOTER", "font-family")


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


def test_page_furniture_is_dropped_and_headings_make_the_path(tmp_path):
    path = write(tmp_path / "docs" / "returns.html", SHOP_PAGE)

    chunks = read_html(path, tmp_path)

    everything = " ".join(c.text + " ".join(c.headings) for c in chunks)
    assert [word for word in FURNITURE if word in everything] == []
    # No h1: the <title> heads the page.
    assert [c.headings for c in chunks] == [
        ["Returns & refunds | ACME"],
        ["Returns & refunds | ACME", "Claim window"],
        ["Returns & refunds | ACME", "Claim window", "Refund method"],
    ]
    assert [c.source for c in chunks] == [
        "docs/returns.html#Returns & refunds | ACME",
        "docs/returns.html#Claim window",
        "docs/returns.html#Refund method",
    ]
    assert chunks[0].text == "Everything you need to know about sending things back."
    assert chunks[1].text == (
        "You have 30 days from delivery.\n\n"
        "| plan | days |\n| --- | --- |\n| basic | 14 |\n| pro | 30 \\| extended |"
    )
    assert chunks[2].text == "- card: 5 working days\n- voucher: at once"
    assert all(c.acl == ["docs"] for c in chunks)


def test_main_element_wins_and_an_article_header_is_kept(tmp_path):
    page = """<html><head><title>Ignored title</title></head><body>
    <div class="banner"><h1>Site name</h1><p>Free shipping over 50!</p></div>
    <main><article>
      <header><h1>Warranty</h1><p class="byline">Updated May 2024</p></header>
      <p>Two years on <em>all</em> devices.</p>
      <h2>Exclusions</h2><ol><li>water damage<ol><li>even a little</li></ol></li><li>drops</li></ol>
      <pre>
  code:  keeps   its spaces
      </pre>
    </article></main>
    <p>Cookie notice outside main</p>
    </body></html>"""
    path = write(tmp_path / "warranty.htm", page)

    chunks = read_html(path, tmp_path)

    assert [c.headings for c in chunks] == [["Warranty"], ["Warranty", "Exclusions"]]
    assert chunks[0].text == "Updated May 2024\n\nTwo years on all devices."
    assert chunks[1].text == (
        "1. water damage\n  1. even a little\n2. drops\n\n  code:  keeps   its spaces"
    )
    assert "Cookie" not in " ".join(c.text for c in chunks)
    assert chunks[0].acl == []  # at the project root


def test_text_before_any_heading_without_title_points_at_its_line(tmp_path):
    path = write(tmp_path / "note.html", "<html><body>\n\n<p>Opening hours: 9-17.</p>\n</body>")

    [chunk] = read_html(path, tmp_path)

    assert (chunk.source, chunk.headings, chunk.text) == ("note.html:3", [], "Opening hours: 9-17.")


def test_meta_groups_and_declared_charset(tmp_path):
    page = (
        '<html><head><meta http-equiv="Content-Type" content="text/html; charset=windows-1252">'
        '<meta name="groups" content="hr, legal"></head>'
        "<body><h1>Caf\u00e9 policy</h1><p>Na\u00efve r\u00e9sum\u00e9s \u2013 welcome.</p></body></html>"
    )
    path = write(tmp_path / "docs" / "cafe.html", page, encoding="cp1252")

    [chunk] = read_html(path, tmp_path)

    assert chunk.headings == ["Caf\u00e9 policy"]
    assert chunk.text == "Na\u00efve r\u00e9sum\u00e9s \u2013 welcome."
    assert chunk.acl == ["hr", "legal"]


def test_gbk_page_and_nested_table_cells(tmp_path):
    page = (
        '<html><head><meta charset="gbk"><title>退货</title></head><body>'
        "<table><caption>运费</caption><tr><th>情况</th><th>谁付</th></tr>"
        "<tr><td colspan=2>质量问题<table><tr><td>我们</td></tr></table></td></tr></table>"
        "</body></html>"
    )
    path = write(tmp_path / "gbk.html", page, encoding="gbk")

    [chunk] = read_html(path, tmp_path)

    assert chunk.headings == ["退货"]
    assert chunk.text == "运费\n\n| 情况 | 谁付 |\n| --- | --- |\n| 质量问题 我们 |  |"


def test_binary_file_named_html_is_a_clear_error(tmp_path):
    path = tmp_path / "logo.html"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")

    with pytest.raises(SourceError) as info:
        read_html(path, tmp_path)

    assert str(info.value).startswith(f"{path}: expected a UTF-8 HTML document, found binary data")
