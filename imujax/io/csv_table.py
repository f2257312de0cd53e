"""Strict reading of numeric csv tables with a header row.

Errors name the file, the line (1-based, header is line 1) and the column, so that a bad file in a large dataset
can be found and fixed.
"""

from __future__ import annotations

import csv
import math
import os
from typing import Sequence

import numpy as np


class CsvFormatError(ValueError):
    """Raised when a csv file does not have the expected columns or values."""


def read_columns(path: str | os.PathLike, float_columns: Sequence[str] = (), int_columns: Sequence[str] = (),
                 text_columns: Sequence[str] = ()) -> dict[str, np.ndarray]:
    """Reads the named columns of a csv file with a header row.

    Float columns become float64 arrays and must be finite; int columns become int64 (for millisecond timestamps,
    which lose precision as float32); text columns become arrays of str. Extra columns are ignored.
    """
    path = os.fspath(path)
    wanted = list(float_columns) + list(int_columns) + list(text_columns)
    if not wanted:
        raise ValueError("read_columns needs at least one column name")
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
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
        for line, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != len(header):
                raise CsvFormatError(f"{path}: line {line} has {len(row)} fields, the header has {len(header)}")
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
                    columns[name].append(int(text))
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
    return out


def read_records(path: str | os.PathLike, required: Sequence[str]) -> list[dict[str, str]]:
    """Rows of a small metadata csv as dicts of stripped strings, checking that `required` columns exist."""
    path = os.fspath(path)
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        header = [name.strip() for name in (reader.fieldnames or [])]
        missing = [name for name in required if name not in header]
        if missing:
            raise CsvFormatError(f"{path}: missing column(s) {missing}; header is {header}")
        return [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in reader]
