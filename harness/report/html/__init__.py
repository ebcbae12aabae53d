"""The HTML report: one self-contained file (inline CSS, SVG charts and a little vanilla JS; no
network), rendered with Jinja2 autoescape from the gathered report data."""

from harness.report.html.render import render_html

__all__ = ["render_html"]
