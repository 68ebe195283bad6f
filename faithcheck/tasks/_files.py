"""Reading task data files row by row, so a bad row costs that row and names it, never the file.

- A UTF-8 byte-order mark is dropped (spreadsheets write one), so it never sticks to the
  first key or header.
- Bytes that are not UTF-8 make their own row unusable, with its line and column; the rest
  loads.
- JSONL lines are split on "\\n" only: U+2028 and other Unicode line breaks inside a string
  are text, and a row's number is always its line number in the file (1-based). CSV rows
  are numbered by the line they start on (a quoted field may span lines).
- A field or line may hold up to FIELD_LIMIT characters (16 MiB); a longer one makes its row
  unusable rather than ending the load.
"""

from __future__ import annotations

import codecs
import csv
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from faithcheck.errors import BadInput

FIELD_LIMIT = 16 * 1024 * 1024  # characters in one CSV field or one JSONL line
_UNDECODABLE = re.compile("[\udc80-\udcff]")  # bytes that were not UTF-8, kept by surrogateescape


def read_bytes(path: Path, flag: str = "") -> bytes:
    """The file's bytes without a UTF-8 BOM; BadInput naming the path when it cannot be read."""
    path = Path(path)
    where = f"{flag} {path}".strip()
    if path.is_dir():
        raise BadInput(f"{where}: is a directory, not a data file")
    if not path.is_file():
        raise BadInput(f"{where}: no such file")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise BadInput(f"{where}: cannot read ({e.strerror or e})") from None
    return data[len(codecs.BOM_UTF8):] if data.startswith(codecs.BOM_UTF8) else data


def _undecodable(text: str) -> str | None:
    m = _UNDECODABLE.search(text)
    if m is None:
        return None
    return f"not UTF-8 (byte 0x{ord(m.group(0)) - 0xDC00:02x} at column {m.start() + 1})"


def jsonl_rows(path: Path, flag: str = "") -> Iterator[tuple[int, Any]]:
    """(line number, parsed JSON value, or a ValueError saying why the line is unusable) for
    every non-blank line."""
    text = read_bytes(path, flag).decode("utf-8", errors="surrogateescape")
    for row_no, line in enumerate(text.split("\n"), start=1):
        line = line[:-1] if line.endswith("\r") else line
        if not line.strip():
            continue
        bad = _undecodable(line)
        if bad:
            yield row_no, ValueError(bad)
        elif len(line) > FIELD_LIMIT:
            yield row_no, ValueError(f"line of {len(line)} characters, over the {FIELD_LIMIT}-character limit")
        else:
            try:
                yield row_no, json.loads(line)
            except json.JSONDecodeError as e:
                yield row_no, ValueError(f"bad JSON: {e.msg} at column {e.colno}")


def csv_rows(path: Path, flag: str = "", header: bool = True) -> tuple[list[str], list[tuple[int, Any]]]:
    """(header, [(line number, {column: value} or a list when `header` is False, or a
    ValueError)]) for every non-blank record."""
    text = read_bytes(path, flag).decode("utf-8", errors="surrogateescape")
    old = csv.field_size_limit()
    csv.field_size_limit(FIELD_LIMIT)
    try:
        return _csv_records(text, header)
    finally:
        csv.field_size_limit(old)


def _csv_records(text: str, header: bool) -> tuple[list[str], list[tuple[int, Any]]]:
    reader = csv.reader(re.split(r"(?<=\n)", text))  # lines end at "\n" only, and keep it
    columns: list[str] = []
    rows: list[tuple[int, Any]] = []
    start = 1
    while True:
        try:
            record = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            rows.append((start, ValueError(f"unreadable CSV ({e}; fields may hold up to {FIELD_LIMIT} characters)")))
            start = reader.line_num + 1
            continue
        row_no, start = start, reader.line_num + 1  # a quoted field may span lines
        if not any(field.strip() for field in record):
            continue
        bad = next((b for b in map(_undecodable, record) if b), None)
        if header and not columns:
            if bad:
                raise ValueError(f"header row: {bad}")
            columns = [h.strip() for h in record]
            continue
        if bad:
            rows.append((row_no, ValueError(bad)))
        elif not header:
            rows.append((row_no, record))
        elif len(record) != len(columns):
            rows.append((row_no, ValueError(f"has {len(record)} fields, the header has {len(columns)}")))
        else:
            rows.append((row_no, dict(zip(columns, record))))
    return columns, rows
