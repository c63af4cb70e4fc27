"""Tables for the terminal (rich): as wide as the terminal, cells cut with an ellipsis instead of mid-word, and
URI columns shown as file names (a whole path pushes the file name off the screen). csv/json keep full values."""
from __future__ import annotations

import io
import shutil

import pyarrow as pa
from rich import box
from rich.console import Console
from rich.table import Table

from vidbatch.read.query import cell_text

DEFAULT_WIDTH = 120  # where the width cannot be asked (a pipe, a test)


def terminal_width() -> int:
    """COLUMNS, else the terminal's width, else DEFAULT_WIDTH."""
    return shutil.get_terminal_size(fallback=(DEFAULT_WIDTH, 24)).columns


def file_name(uri: str) -> str:
    return uri.rstrip("/").rsplit("/", 1)[-1] or uri


def is_uri_column(name: str) -> bool:
    return name.endswith(("uri", "_path")) or name in ("path", "file")


GAP = 3  # between two columns: a space of padding each side of the (blank) divider
MIN_CUT = 8  # a column is never cut narrower than this (or its header)


def fit_widths(natural: list[int], headers: list[int], width: int) -> list[int]:
    """Column widths within `width`: narrow columns keep their width; the widest are cut to one common cap first
    (so a long JSON list gives way before a file name or a number)."""
    room = width - GAP * (len(natural) - 1)
    if sum(natural) <= room:
        return natural
    floor = [min(n, max(h, MIN_CUT)) for n, h in zip(natural, headers)]
    cap = max(natural)
    while cap > 1 and sum(max(f, min(n, cap)) for n, f in zip(natural, floor)) > room:
        cap -= 1
    return [max(f, min(n, cap)) for n, f in zip(natural, floor)]


def render_rows(
    columns: list[str], rows: list[list[str]], width: int | None = None, numeric: set[str] = frozenset(),
    footer: str | None = None,
) -> str:
    """Aligned columns (numbers right-aligned), cut to `width` with an ellipsis, plain text (no colour codes)."""
    natural = [max([len(name), *(len(r[i]) for r in rows)]) for i, name in enumerate(columns)]
    widths = fit_widths(natural, [len(c) for c in columns], width or terminal_width())
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="", expand=False)
    for name, w in zip(columns, widths):
        table.add_column(name, justify="right" if name in numeric else "left", overflow="ellipsis", no_wrap=True, width=w)
    for row in rows:
        table.add_row(*row)
    buffer = io.StringIO()
    console = Console(file=buffer, width=sum(widths) + GAP * (len(widths) - 1), color_system=None, force_terminal=False,
                      legacy_windows=False, emoji=False, highlight=False, markup=False)
    console.print(table)
    lines = [line.rstrip() for line in buffer.getvalue().splitlines()]
    if footer:
        lines.append(footer)
    return "\n".join(lines)


def render_table(table: pa.Table, width: int | None = None, file_names: bool = True) -> str:
    """A query result for the terminal, with a `(N rows)` line."""
    numeric = {
        f.name for f in table.schema
        if pa.types.is_integer(f.type) or pa.types.is_floating(f.type) or pa.types.is_decimal(f.type)
    }
    cells = []
    for name, column in zip(table.column_names, table.columns):
        values = [cell_text(v) for v in column.to_pylist()]
        if file_names and is_uri_column(name):
            values = [file_name(v) if v else v for v in values]
        cells.append(values)
    rows = [[col[i] for col in cells] for i in range(table.num_rows)]
    return render_rows(table.column_names, rows, width, numeric, f"({table.num_rows} row{'s' if table.num_rows != 1 else ''})")
