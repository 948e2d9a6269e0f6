"""MkDocs hooks: pages generated from the repository, so that they cannot
drift from it.

- `benchmarks/<name>.md` and its plot: the files the benchmark scripts wrote
  (`benchmarks/*.md`, `*.png`), each under a line that names its source; their
  first lines give the machine and the date of the figures.
- `<!-- tflstm-convert: COMMAND -->` in a page: the command's `--help`, as
  `converters.cli.parser` prints it.
- `<!-- include: benchmarks/NAME.md -->` in a page: that file as the
  benchmark script wrote it (its machine and date first), so that a guide's
  tables are the measured ones.
"""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"
CLI_MARKER = re.compile(r"<!-- tflstm-convert: ?(\S*) -->")
INCLUDE_MARKER = re.compile(r"<!-- include: (benchmarks/[\w.-]+\.md) -->")


def on_files(files: Files, config) -> Files:
    for source in sorted(BENCHMARKS.glob("*.md")):
        text = source.read_text()
        if not text.startswith("# "):  # a page needs a title
            text = f"# {source.stem}\n\n{text}"
        title, _, body = text.partition("\n")
        plot = source.with_suffix(".png")
        if plot.exists():  # the plot the same script drew
            body += f"\n\n![{plot.stem}]({plot.name})\n"
        note = (
            f"\n\n*Written by the benchmark scripts: `benchmarks/{source.name}` "
            "in the repository; re-run them to update it.*\n"
        )
        page = File.generated(
            config, f"benchmarks/{source.name}", content=title + note + body
        )
        files.append(page)
    for plot in sorted(BENCHMARKS.glob("*.png")):
        files.append(
            File.generated(config, f"benchmarks/{plot.name}", abs_src_path=str(plot))
        )
    return files


def _help(command: str) -> str:
    from converters.cli.parser import build_parser

    parser = build_parser()
    if command:
        parser = next(
            action.choices[command]
            for action in parser._subparsers._group_actions
            if command in getattr(action, "choices", {})
        )
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        parser.print_help()
    return f"```text\n{out.getvalue().rstrip()}\n```"


def _include(path: str) -> str:
    text = (ROOT / path).read_text()
    if text.startswith("# "):  # the page's title: the guide has its own
        text = text.partition("\n")[2]
    return f"*From `{path}`, as the benchmark script wrote it:*\n\n{text.strip()}"


def on_page_markdown(markdown: str, page, config, files) -> str:
    markdown = INCLUDE_MARKER.sub(lambda m: _include(m[1]), markdown)
    return CLI_MARKER.sub(lambda m: _help(m[1]), markdown)
