"""A small, safe subset of Markdown for property values (``format: markdown``).

Everything is escaped first and only then are a few constructs turned into tags, so no input
can produce a tag, an attribute or a script of its own: headings, paragraphs, bullet and
numbered lists, fenced and inline code, bold, italics and http(s)/mailto links.
"""

from __future__ import annotations

import re

from markupsafe import Markup, escape

LINK = re.compile(r"\[([^\]\n]{1,500})\]\(((?:https?://|mailto:)[^\s()\"'<>]{1,2000})\)")
BOLD = re.compile(r"\*\*([^*\n]{1,2000})\*\*")
ITALIC = re.compile(r"(?<![*\w])\*([^*\n]{1,2000})\*(?![*\w])")
CODE = re.compile(r"`([^`\n]{1,2000})`")
HEADING = re.compile(r"^(#{1,6})\s+(.*)$")
BULLET = re.compile(r"^\s*[-*+]\s+(.*)$")
NUMBERED = re.compile(r"^\s*\d{1,9}[.)]\s+(.*)$")


def _inline(text: str) -> str:
    """Inline markup of one already-escaped line (code spans keep their content literal)."""
    parts = CODE.split(text)
    out = []
    for i, part in enumerate(parts):
        if i % 2:
            out.append(f"<code>{part}</code>")
            continue
        part = LINK.sub(lambda m: f'<a href="{m.group(2)}" rel="noopener noreferrer">{m.group(1)}</a>', part)
        part = BOLD.sub(r"<strong>\1</strong>", part)
        out.append(ITALIC.sub(r"<em>\1</em>", part))
    return "".join(out)


def render(source: object) -> Markup:
    lines = str(escape("" if source is None else source)).splitlines()
    html: list[str] = []
    paragraph: list[str] = []
    list_tag: str | None = None
    fence: list[str] | None = None

    def close() -> None:
        nonlocal list_tag
        if paragraph:
            html.append("<p>" + "<br>".join(_inline(p) for p in paragraph) + "</p>")
            paragraph.clear()
        if list_tag:
            html.append(f"</{list_tag}>")
            list_tag = None

    for line in lines:
        if fence is not None:
            if line.strip().startswith("```"):
                html.append("<pre><code>" + "\n".join(fence) + "</code></pre>")
                fence = None
            else:
                fence.append(line)
            continue
        if line.strip().startswith("```"):
            close()
            fence = []
            continue
        if not line.strip():
            close()
            continue
        if heading := HEADING.match(line):
            close()
            level = min(len(heading.group(1)) + 2, 6)  # inside a page: never above its own headings
            html.append(f"<h{level}>{_inline(heading.group(2))}</h{level}>")
            continue
        item = BULLET.match(line) or NUMBERED.match(line)
        if item:
            tag = "ul" if BULLET.match(line) else "ol"
            if paragraph:
                close()
            if list_tag != tag:
                if list_tag:
                    html.append(f"</{list_tag}>")
                html.append(f"<{tag}>")
                list_tag = tag
            html.append(f"<li>{_inline(item.group(1))}</li>")
            continue
        if list_tag:
            close()
        paragraph.append(line)
    if fence is not None:
        html.append("<pre><code>" + "\n".join(fence) + "</code></pre>")
    close()
    return Markup("\n".join(html))
