"""A report as a list of blocks, rendered as Markdown (images as files beside it) and as one
self-contained HTML page (images embedded as data: URIs, no external resource).

Blocks: Heading, Paragraph, Bullets, Table (rows flagged INVALID are marked in both forms:
the word INVALID in the row and, in HTML, a red row) and Image (PNG bytes, a file name and
its alt text). Text is plain: the renderers escape it.
"""

from __future__ import annotations

import base64
import dataclasses
import html
from collections.abc import Sequence


@dataclasses.dataclass(frozen=True)
class Heading:
    level: int
    text: str

    @property
    def anchor(self) -> str:
        return "".join(c if c.isalnum() else "-" for c in self.text.lower()).strip("-")


@dataclasses.dataclass(frozen=True)
class Paragraph:
    text: str
    note: bool = False  # a caveat or a "not measured here" notice: set apart in HTML


@dataclasses.dataclass(frozen=True)
class Bullets:
    items: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Table:
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    invalid: tuple[bool, ...] = ()  # per row; empty: none is

    def __post_init__(self):
        object.__setattr__(self, "rows", tuple(tuple(r) for r in self.rows))
        if self.invalid and len(self.invalid) != len(self.rows):
            raise ValueError("a table flags every row or none")
        if any(len(r) != len(self.columns) for r in self.rows):
            raise ValueError("every row of a table has one cell per column")

    def is_invalid(self, k: int) -> bool:
        return bool(self.invalid) and self.invalid[k]


@dataclasses.dataclass(frozen=True)
class Image:
    name: str  # file name under the report's plots/ directory
    png: bytes
    alt: str


Block = Heading | Paragraph | Bullets | Table | Image
PLOTS_DIR = "plots"


# ----------------------------------------------------------------------------- Markdown


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(blocks: Sequence[Block]) -> str:
    out: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            out.append(f"{'#' * block.level} {block.text}")
        elif isinstance(block, Paragraph):
            out.append(f"> {block.text}" if block.note else block.text)
        elif isinstance(block, Bullets):
            out.append("\n".join(f"- {item}" for item in block.items))
        elif isinstance(block, Table):
            lines = ["| " + " | ".join(_md_cell(c) for c in block.columns) + " |",
                     "|" + "|".join("---" for _ in block.columns) + "|"]
            lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in block.rows]
            out.append("\n".join(lines))
        elif isinstance(block, Image):
            out.append(f"![{block.alt}]({PLOTS_DIR}/{block.name})")
    return "\n\n".join(out) + "\n"


# ----------------------------------------------------------------------------- HTML

_STYLE = """
body { font-family: sans-serif; max-width: 70em; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.85em; }
th, td { border: 1px solid #bbb; padding: 0.25em 0.5em; text-align: left; }
th { background: #eee; }
tr.invalid td { background: #fbe3e3; color: #8a1c1c; }
p.note { background: #fff7e0; border-left: 4px solid #e0a800; padding: 0.5em 1em; }
img { max-width: 100%; display: block; margin: 1em 0; }
nav li { margin: 0.1em 0; }
"""


def to_html(blocks: Sequence[Block], title: str) -> str:
    e = html.escape
    body: list[str] = []
    headings = [b for b in blocks if isinstance(b, Heading) and b.level == 2]
    if headings:
        body.append("<nav><ul>" + "".join(f'<li><a href="#{h.anchor}">{e(h.text)}</a></li>' for h in headings) + "</ul></nav>")
    for block in blocks:
        if isinstance(block, Heading):
            body.append(f'<h{block.level} id="{block.anchor}">{e(block.text)}</h{block.level}>')
        elif isinstance(block, Paragraph):
            body.append(f'<p class="note">{e(block.text)}</p>' if block.note else f"<p>{e(block.text)}</p>")
        elif isinstance(block, Bullets):
            body.append("<ul>" + "".join(f"<li>{e(item)}</li>" for item in block.items) + "</ul>")
        elif isinstance(block, Table):
            head = "".join(f"<th>{e(c)}</th>" for c in block.columns)
            rows = []
            for k, row in enumerate(block.rows):
                cls = ' class="invalid"' if block.is_invalid(k) else ""
                rows.append(f"<tr{cls}>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>")
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>")
        elif isinstance(block, Image):
            data = base64.b64encode(block.png).decode("ascii")
            body.append(f'<img src="data:image/png;base64,{data}" alt="{e(block.alt)}" data-name="{e(block.name)}">')
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{e(title)}</title><style>{_STYLE}</style></head>\n<body>\n" + "\n".join(body) + "\n</body></html>\n"
    )
