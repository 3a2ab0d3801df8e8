"""A plugin's Markdown page as safe HTML with a table of contents.

markdown-it-py (CommonMark + tables + strikethrough) renders; nh3 (ammonia) then keeps only
an allowlist: no script or style (elements or attributes), no event handlers, no `target`,
links only to `http`, `https`, `mailto` or an in-page `#anchor` (each with
`rel="noopener noreferrer"`), images only as `data:image/...` (a remote image would tell the
plugin, or anyone, who reads the page and when). Headings get slugified ids prefixed `doc-`
(they cannot clobber the console's own ids) and move one level down, under the page's h1.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from importlib.metadata import version
from typing import Any

import nh3
from markdown_it import MarkdownIt
from markdown_it.token import Token

# Stored with each rendering: a cached page rendered by another version is rendered again.
RENDERER = f"markdown-it-py {version('markdown-it-py')}; nh3 {version('nh3')}; rules 1"
ID_PREFIX = "doc-"
TOC_DEPTH = 3  # the doc's own h1-h3 make the table of contents
_SLUG_DROP = re.compile(r"[^a-z0-9\s-]")
_SLUG_JOIN = re.compile(r"[\s-]+")
_DATA_IMAGE = re.compile(r"data:image/(png|gif|jpeg|webp);base64,[A-Za-z0-9+/=\s]*", re.ASCII)
_LINK_SCHEMES = ("http://", "https://", "mailto:")

TAGS = {
    "a", "abbr", "b", "blockquote", "br", "code", "dd", "del", "details", "div", "dl", "dt",
    "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "kbd", "li", "ol", "p", "pre",
    "s", "samp", "span", "strong", "sub", "summary", "sup", "table", "tbody", "td", "tfoot",
    "th", "thead", "tr", "ul",
}  # fmt: skip
ATTRIBUTES: dict[str, set[str]] = {
    "a": {"href", "title"},
    "img": {"src", "alt", "title", "width", "height"},
    "abbr": {"title"},
    "ol": {"start"},
    "td": {"align", "colspan", "rowspan"},
    "th": {"align", "colspan", "rowspan", "scope"},
    **{f"h{n}": {"id"} for n in range(1, 7)},
}


@dataclass
class TocEntry:
    id: str
    text: str
    level: int
    children: list[TocEntry] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "text": self.text,
            "level": self.level,
            "children": [c.to_json() for c in self.children],
        }


@dataclass(frozen=True)
class Rendered:
    html: str
    toc: list[dict[str, Any]]  # nested: {"id", "text", "level", "children"}
    renderer: str = RENDERER


def slugify(text: str) -> str:
    """`"Set up & run!"` → `"set-up-run"` (ASCII letters, digits, single hyphens)."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    words = _SLUG_DROP.sub("", ascii_text.lower()).strip()
    return _SLUG_JOIN.sub("-", words).strip("-")[:60].strip("-") or "section"


def _keep_attribute(tag: str, attr: str, value: str) -> str | None:
    """nh3's attribute filter: the last word on URLs and ids."""
    if attr == "src":
        return value if tag == "img" and _DATA_IMAGE.fullmatch(value) else None
    if attr == "href":
        if value.startswith("#") or value.lower().startswith(_LINK_SCHEMES):
            return value
        return None
    if attr == "id":
        return value if value.startswith(ID_PREFIX) else None
    return value


def sanitize(html: str) -> str:
    return nh3.clean(
        html,
        tags=TAGS,
        attributes=ATTRIBUTES,
        url_schemes={"http", "https", "mailto", "data"},
        link_rel="noopener noreferrer",
        strip_comments=True,
        attribute_filter=_keep_attribute,
    )


def _parser() -> MarkdownIt:
    # `html` on: the author's raw HTML reaches nh3, which drops what is not allowed (with
    # `html` off it would show up as escaped text). markdown-it's own link check refuses
    # javascript:, vbscript:, file: and non-image data: URLs before that.
    return MarkdownIt("commonmark", {"html": True, "linkify": False, "typographer": False}).enable(
        ["table", "strikethrough"]
    )


_IMG = re.compile(r'<img((?:\s+[a-z-]+="[^"]*")*)\s*/?>')


def _fix_images(html: str) -> str:
    """After nh3: an image it left without a source goes; one without `alt` gets `alt=""`
    (matches nh3's serialisation: lowercase names, double-quoted values)."""

    def fix(m: re.Match[str]) -> str:
        attrs = m.group(1)
        if ' src="' not in attrs:
            return ""
        return m.group(0) if ' alt="' in attrs else f'<img{attrs} alt="">'

    return _IMG.sub(fix, html)


def _drop_remote_images(tokens: list[Token]) -> None:
    """A Markdown image that is not `data:image/...` becomes its alt text."""
    for token in tokens:
        if token.type != "inline" or not token.children:
            continue
        for n, child in enumerate(token.children):
            if child.type == "image" and not _DATA_IMAGE.fullmatch(str(child.attrGet("src"))):
                token.children[n] = Token("text", "", 0, content=child.content)


def _heading_text(inline: Token) -> str:
    parts = [c.content for c in inline.children or [] if c.type in {"text", "code_inline"}]
    return " ".join("".join(parts).split())


def render_markdown(source: str) -> Rendered:
    """Markdown → sanitised HTML and its table of contents (never raises on odd input)."""
    md = _parser()
    tokens = md.parse(source)
    _drop_remote_images(tokens)
    seen: dict[str, int] = {}
    roots: list[TocEntry] = []
    stack: list[TocEntry] = []
    for i, token in enumerate(tokens):
        if token.type not in {"heading_open", "heading_close"}:
            continue
        level = int(token.tag[1])
        token.tag = f"h{min(level + 1, 6)}"
        if token.type == "heading_close":
            continue
        text = _heading_text(tokens[i + 1]) if i + 1 < len(tokens) else ""
        base = slugify(text)
        seen[base] = seen.get(base, 0) + 1
        anchor = ID_PREFIX + (base if seen[base] == 1 else f"{base}-{seen[base]}")
        token.attrSet("id", anchor)
        if level > TOC_DEPTH or not text:
            continue
        entry = TocEntry(anchor, text, level)
        while stack and stack[-1].level >= level:
            stack.pop()
        (stack[-1].children if stack else roots).append(entry)
        stack.append(entry)
    html = md.renderer.render(tokens, md.options, {})
    return Rendered(_fix_images(sanitize(html)), [e.to_json() for e in roots])
