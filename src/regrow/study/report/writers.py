"""The report as files: report.md (text; figures named), report.html (the same markdown rendered
by the `markdown` library, figures embedded as PNG), report.json (the numbers)."""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass
from pathlib import Path

from regrow.analysis.plots import png_bytes, pyplot
from regrow.atomic import write_text_atomic


@dataclass
class Figure:
    name: str
    png: bytes

    @classmethod
    def of(cls, name: str, fig) -> Figure:
        """Render and close a matplotlib figure."""
        data = png_bytes(fig)
        pyplot().close(fig)
        return cls(name, data)


Block = str | Figure  # a markdown line, or a figure at that place


def to_markdown(blocks: list[Block]) -> str:
    return "\n".join(f"*Figure: {b.name} (embedded in report.html).*\n" if isinstance(b, Figure) else b
                     for b in blocks) + "\n"


def to_html(title: str, blocks: list[Block], appendix: str) -> str:
    """Markdown runs rendered with `markdown` (tables extension); figures as <figure> with an
    embedded PNG; `appendix` is preformatted text (the resolved study file)."""
    import markdown

    parts, text = [], []

    def flush() -> None:
        if text:
            source = "\n".join(text).replace("&", "&amp;").replace("<", "&lt;")
            parts.append(markdown.markdown(source, extensions=["tables"]))
            text.clear()

    for block in blocks:
        if isinstance(block, Figure):
            flush()
            data = base64.b64encode(block.png).decode()
            parts.append(f"<figure><img alt='{html.escape(block.name)}' src='data:image/png;base64,{data}'>"
                         f"<figcaption>{html.escape(block.name)}</figcaption></figure>")
        else:
            text.append(block)
    flush()
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;line-height:1.4}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 6px;font-size:13px}"
             "th{background:#f3f3f3}img{max-width:100%}figure{margin:1.5em 0}figcaption{color:#666;font-size:12px}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>{''.join(parts)}<pre>{html.escape(appendix)}</pre></body></html>\n")


def write_report(out: Path, title: str, blocks: list[Block], appendix_md: str, appendix_text: str, data: dict) -> None:
    write_text_atomic(out / "report.md", to_markdown(blocks) + appendix_md)
    write_text_atomic(out / "report.html", to_html(title, blocks, appendix_text))
    write_text_atomic(out / "report.json", json.dumps(data, indent=2) + "\n")
