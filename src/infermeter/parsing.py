"""Parsers for command-line and config values; each raises BadInput with one clear line."""

from __future__ import annotations

import json
import re

from infermeter.errors import BadInput


def positive_int_list(text: str, what: str) -> list[int]:
    """'1,8,32' -> [1, 8, 32]; rejects empty items, non-integers, zero, negatives and duplicates."""
    items = [t.strip() for t in str(text).split(",")]
    if not items or any(t == "" for t in items):
        raise BadInput(f"{what}: expected a comma-separated list of positive integers, got {text!r}")
    out: list[int] = []
    for t in items:
        if not re.fullmatch(r"\+?\d+", t):
            raise BadInput(f"{what}: {t!r} is not a positive integer (in {text!r})")
        v = int(t)
        if v <= 0:
            raise BadInput(f"{what}: {v} is not positive (in {text!r})")
        if v in out:
            raise BadInput(f"{what}: {v} is listed twice (in {text!r})")
        out.append(v)
    return out


def gpu_id_spec(value) -> int | list[int] | str:
    """--gpu-id: '1' -> 1, '0,2' -> [0, 2], 'all' -> 'all' (physical indices as nvidia-smi shows them)."""
    if isinstance(value, bool):
        raise BadInput(f"--gpu-id: expected an index, a comma list of indices or all, got {value!r}")
    if isinstance(value, int):
        ids = [value]
    elif isinstance(value, list) and value and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        ids = value
    elif isinstance(value, str) and value.strip().lower() == "all":
        return "all"
    elif isinstance(value, str):
        items = [t.strip() for t in value.split(",")]
        if not all(re.fullmatch(r"\d+", t) for t in items):
            raise BadInput(f"--gpu-id: expected an index (0), a comma list (0,2) or all, got {value!r}")
        ids = [int(t) for t in items]
    else:
        raise BadInput(f"--gpu-id: expected an index, a comma list of indices or all, got {value!r}")
    for v in ids:
        if v < 0:
            raise BadInput(f"--gpu-id: {v} is negative")
    dup = sorted({v for v in ids if ids.count(v) > 1})
    if dup:
        raise BadInput(f"--gpu-id: {dup[0]} is listed twice")
    return ids[0] if len(ids) == 1 else list(ids)


def positive_float_list(text: str, what: str) -> list[float]:
    items = [t.strip() for t in str(text).split(",")]
    out: list[float] = []
    for t in items:
        try:
            v = float(t)
        except ValueError:
            raise BadInput(f"{what}: {t!r} is not a number (in {text!r})") from None
        if not v > 0 or v == float("inf"):
            raise BadInput(f"{what}: {t!r} is not a positive finite number (in {text!r})")
        out.append(v)
    return out


def name_list(text: str, what: str, allowed: list[str] | None = None) -> list[str]:
    items = [t.strip() for t in str(text).split(",")]
    if not items or any(t == "" for t in items):
        raise BadInput(f"{what}: expected a comma-separated list, got {text!r}")
    if allowed is not None:
        for t in items:
            if t not in allowed:
                raise BadInput(f"{what}: unknown {t!r}; choose from {', '.join(allowed)}")
    return list(dict.fromkeys(items))


def input_shapes(text: str) -> list[list[int]]:
    """'[1,3,224,224],[1,128]' -> [[1,3,224,224],[1,128]]: one shape per model input, all positive."""
    try:
        value = json.loads(f"[{text}]")
    except json.JSONDecodeError:
        raise BadInput(f"--input-shapes: {text!r} is not a list of shapes like \"[1,3,224,224],[1,128]\"") from None
    if not value or not all(isinstance(s, list) and s for s in value):
        raise BadInput(f"--input-shapes: {text!r} is not a list of shapes like \"[1,3,224,224],[1,128]\"")
    for s in value:
        if not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in s):
            raise BadInput(f"--input-shapes: every dimension must be a positive integer, got {s}")
    return value


def input_shape_sets(text: str) -> list[list[list[int]]]:
    """Several experiments separated by ';': '[1,224,224,3];[1,336,336,3]' -> two shape sets."""
    return [input_shapes(part.strip()) for part in str(text).split(";") if part.strip()] or [input_shapes(text)]


SAFE_NAME = re.compile(r"[^A-Za-z0-9._+-]+")


def safe_name(text: str) -> str:
    """A file-name component that cannot leave its folder ('../x' -> 'x')."""
    cleaned = SAFE_NAME.sub("-", str(text)).strip(".-")
    return cleaned or "unnamed"


def parse_input_ranges(items: list[str] | None) -> dict[str, tuple[float, float]]:
    """['ids=0:30522', 'x=-1:1'] -> {'ids': (0.0, 30522.0), 'x': (-1.0, 1.0)}; LOW < HIGH."""
    out: dict[str, tuple[float, float]] = {}
    for item in items or []:
        m = re.fullmatch(r"\s*([^=\s]+)\s*=\s*([-+0-9.eE]+)\s*:\s*([-+0-9.eE]+)\s*", str(item))
        try:
            low, high = (float(m.group(2)), float(m.group(3))) if m else (None, None)
        except ValueError:
            low = high = None
        if low is None or not low < high:
            raise BadInput(f"--input-range: expected NAME=LOW:HIGH with LOW < HIGH (e.g. input_ids=0:30522), got {item!r}")
        if m.group(1) in out:
            raise BadInput(f"--input-range: {m.group(1)!r} is given twice")
        out[m.group(1)] = (low, high)
    return out
