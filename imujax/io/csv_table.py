"""Strict reading of numeric csv tables with a header row.

Errors name the file, the line (1-based, header is line 1) and the column, so that a bad file in a large dataset
can be found and fixed. Hostile files fail with `CsvFormatError` too: text that is not UTF-8 (line and byte named),
a line or field longer than MAX_LINE_BYTES, a FIFO or device file instead of a file.
"""

from __future__ import annotations

import contextlib
import csv
import itertools
import math
import os
from typing import Sequence

import numpy as np

from imujax.io import files

MAX_LINE_BYTES = 1 << 20  # a numeric table's line is short; a longer one is not a table (and is not held in memory)
LINE = "#line"  # read_columns(..., line_numbers=True) puts each row's line number under this key


class CsvFormatError(ValueError):
    """Raised when a csv file does not have the expected columns or values."""


def _text_lines(f, path: str):
    """Lines of a binary file decoded as UTF-8 (a byte-order mark at the start is dropped), each at most
    MAX_LINE_BYTES long; errors name the line."""
    for number in itertools.count(1):
        raw = f.readline(MAX_LINE_BYTES + 1)
        if not raw:
            return
        if len(raw) > MAX_LINE_BYTES:
            raise CsvFormatError(f"{path}: line {number} is longer than {MAX_LINE_BYTES} bytes; not a csv table "
                                 f"(or its lines do not end with \\n or \\r\\n)")
        try:
            yield raw.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError as e:
            raise CsvFormatError(f"{path}: line {number}, byte {e.start + 1}: not UTF-8 text ({e.reason}); save the "
                                 f"file as UTF-8") from None


@contextlib.contextmanager
def _rows(path: str, reader_type=csv.reader):
    """A csv reader over the checked lines of `path`; csv errors (e.g. a field over the size limit) name the line."""
    files.check_regular(path, CsvFormatError)
    with open(path, "rb") as f:
        reader = reader_type(_text_lines(f, path))
        try:
            yield reader
        except csv.Error as e:
            raise CsvFormatError(f"{path}: line {reader.line_num}: {e}") from None


def read_columns(path: str | os.PathLike, float_columns: Sequence[str] = (), int_columns: Sequence[str] = (),
                 text_columns: Sequence[str] = (), line_numbers: bool = False) -> dict[str, np.ndarray]:
    """Reads the named columns of a csv file with a header row.

    Float columns become float64 arrays and must be finite; int columns become int64 (for millisecond timestamps,
    which lose precision as float32); text columns become arrays of str. Extra columns are ignored.
    `line_numbers=True` adds each row's line number in the file under LINE, for error messages about values.
    """
    path = os.fspath(path)
    wanted = list(float_columns) + list(int_columns) + list(text_columns)
    if not wanted:
        raise ValueError("read_columns needs at least one column name")
    row_lines: list[int] = []
    with _rows(path) as reader:
        header = next(reader, None)
        if header is None:
            raise CsvFormatError(f"{path}: empty file, expected a header row with {wanted}")
        header = [name.strip() for name in header]
        missing = [name for name in wanted if name not in header]
        if missing:
            raise CsvFormatError(f"{path}: missing column(s) {missing}; header is {header}")
        index = {name: header.index(name) for name in wanted}
        columns: dict[str, list] = {name: [] for name in wanted}
        bad_values: dict[str, list[int]] = {}
        for row in reader:
            if not row:
                continue
            line = reader.line_num  # the physical line, also after quoted line breaks
            if len(row) != len(header):
                raise CsvFormatError(f"{path}: line {line} has {len(row)} fields, the header has {len(header)}")
            row_lines.append(line)
            for name in float_columns:
                text = row[index[name]]
                try:
                    value = float(text)
                except ValueError:
                    value = math.nan
                if not math.isfinite(value):
                    bad_values.setdefault(name, []).append(line)
                columns[name].append(value)
            for name in int_columns:
                text = row[index[name]].strip()
                try:
                    value = int(text)
                    if not -2**63 <= value < 2**63:
                        raise ValueError("outside the int64 range")
                    columns[name].append(value)
                except ValueError:
                    raise CsvFormatError(f"{path}: line {line}, column {name!r}: expected an integer, "
                                         f"got {text!r}") from None
            for name in text_columns:
                columns[name].append(row[index[name]].strip())
    if bad_values:
        details = "; ".join(f"{name!r} at line(s) {lines[:5]}{' ...' if len(lines) > 5 else ''}"
                            for name, lines in bad_values.items())
        raise CsvFormatError(f"{path}: missing, non-numeric or non-finite values in {details}")
    if not columns[wanted[0]]:
        raise CsvFormatError(f"{path}: no data rows")
    out: dict[str, np.ndarray] = {}
    for name in float_columns:
        out[name] = np.asarray(columns[name], np.float64)
    for name in int_columns:
        out[name] = np.asarray(columns[name], np.int64)
    for name in text_columns:
        out[name] = np.asarray(columns[name], dtype=str)
    if line_numbers:
        out[LINE] = np.asarray(row_lines, np.int64)
    return out


def read_records(path: str | os.PathLike, required: Sequence[str]) -> list[dict[str, str]]:
    """Rows of a small metadata csv as dicts of stripped strings, checking that `required` columns exist."""
    path = os.fspath(path)
    with _rows(path, csv.DictReader) as reader:
        header = [name.strip() for name in (reader.fieldnames or [])]
        missing = [name for name in required if name not in header]
        if missing:
            raise CsvFormatError(f"{path}: missing column(s) {missing}; header is {header}")
        return [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in reader]
