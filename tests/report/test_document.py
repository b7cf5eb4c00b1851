"""Report blocks rendered as Markdown and HTML: escaping, INVALID rows, embedded images, contents."""

import base64

import pytest

from tfs_bench.report.document import Bullets
from tfs_bench.report.document import Heading
from tfs_bench.report.document import Image
from tfs_bench.report.document import Paragraph
from tfs_bench.report.document import Table
from tfs_bench.report.document import to_html
from tfs_bench.report.document import to_markdown

PNG = b"\x89PNG\r\n\x1a\nnot really an image"
BLOCKS = [
    Heading(1, "report"),
    Heading(2, "1. Throughput: a < b"),
    Paragraph("p95 ≤ 20 ms & more"),
    Paragraph("no GPU found: why", note=True),
    Bullets(("first", "second")),
    Table(("model", "verdict"), (("a|b", "VALID"), ("c", "INVALID (unstable)")), invalid=(False, True)),
    Image("plot.png", PNG, 'the "plot"'),
]


def test_markdown_escapes_table_pipes_and_points_images_at_plots():
    text = to_markdown(BLOCKS)
    assert text.startswith("# report\n\n## 1. Throughput: a < b\n\np95 ≤ 20 ms & more\n\n> no GPU found: why\n\n- first\n- second\n")
    assert "| model | verdict |\n|---|---|\n| a\\|b | VALID |\n| c | INVALID (unstable) |" in text
    assert text.endswith('![the "plot"](plots/plot.png)\n')


def test_html_escapes_text_marks_invalid_rows_and_embeds_images():
    page = to_html(BLOCKS, "t <1>")
    assert "<title>t &lt;1&gt;</title>" in page
    assert '<h2 id="1--throughput--a---b">1. Throughput: a &lt; b</h2>' in page
    assert '<li><a href="#1--throughput--a---b">1. Throughput: a &lt; b</a></li>' in page  # contents list
    assert "<p>p95 ≤ 20 ms &amp; more</p>" in page and '<p class="note">no GPU found: why</p>' in page
    assert "<tr><td>a|b</td><td>VALID</td></tr>" in page
    assert '<tr class="invalid"><td>c</td><td>INVALID (unstable)</td></tr>' in page
    encoded = base64.b64encode(PNG).decode()
    assert f'<img src="data:image/png;base64,{encoded}" alt="the &quot;plot&quot;" data-name="plot.png">' in page
    assert "plots/" not in page


def test_a_table_must_be_rectangular_and_flag_every_row_or_none():
    with pytest.raises(ValueError, match="one cell per column"):
        Table(("a", "b"), (("1",),))
    with pytest.raises(ValueError, match="every row or none"):
        Table(("a",), (("1",), ("2",)), invalid=(True,))
