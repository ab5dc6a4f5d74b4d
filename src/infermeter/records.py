"""Where a measurement record's fields are written: the `column()` field metadata every typed record uses
(the scenarios' results, the cell telemetry, the held-out accuracy) and the one reader of it, columns_of().
Its own module, importing nothing of the package, so records below the scenarios (telemetry, check) use it
without an import arrow up into them."""

from __future__ import annotations

from dataclasses import field, fields


def column(name: str | None = None, *, file: str | None = None, internal: str | None = None, part: bool = False,
           **kw):
    """A record field and where it is written: results.csv column `name` (default: the field's name), or
    a file beside the row (`file`), or nowhere because the row already says it or it is a clock value only
    the harness uses (`internal`, saying why), or a record whose own fields are columns (`part`).
    columns_of() reads these, so no field can be dropped silently."""
    return field(metadata={"column": name, "file": file, "internal": internal, "part": part}, **kw)


def columns_of(record) -> dict:
    """The results.csv columns a record fills, its parts' included (a part that is None fills none)."""
    out: dict = {}
    for f in fields(record):
        meta, value = f.metadata, getattr(record, f.name)
        if meta.get("part"):
            out.update(columns_of(value) if value is not None else {})
        elif not (meta.get("file") or meta.get("internal")):
            out[meta.get("column") or f.name] = value
    return out
