"""Text to the contract's types, vectorised, finding exactly which values fail and why.

Clean columns cost one pyarrow cast. Only when that cast fails are values trimmed, checked with a
pattern, and the remaining failures located by halving (a failing cast says *that* something is
wrong, not *where*); the reason for each bad value is then worded in Python, which is cheap
because bad values are few. The fast cast never accepts a value the slow path would refuse, so
both give the same result.

Rules: surrounding blanks are ignored for non-string types; an empty value is null (strings too:
CSV cannot tell empty from missing); integers are decimal digits with an optional sign; decimals
are rejected, not rounded, when they have more places than the scale; dates are YYYY-MM-DD and
must exist; timestamps are ISO 8601 with up to microseconds, an offset or Z converts to UTC and
the value is stored without zone (microseconds, which Athena reads as `timestamp`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import MAX_EMAX, MIN_EMIN, Context, Decimal, InvalidOperation
from typing import TypeAlias

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from contracts.arrow import arrow_type
from contracts.datasets import DECIMAL_RE
from services.transform.rows import shorten

_CAST_ERRORS = (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, OverflowError)
_INT_SYNTAX = r"^[+-]?[0-9]+$"
_DECIMAL_SYNTAX = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$"
_DATE_SYNTAX = r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$"
_TS_ZONE = r"(Z|[+-][0-9]{2}:?[0-9]{2})$"
_TS_SYNTAX = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}([T ][0-9]{2}(:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?)?" + _TS_ZONE[:-1] + "?)?$"
_DATE_SHAPE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_LEAF = 8
Column: TypeAlias = pa.Array | pa.ChunkedArray


def _cast_timestamp(values: Column) -> Column:
    """Naive values as they are; values with Z or an offset converted to UTC, then stored naive."""
    zoned = pc.match_substring_regex(values, _TS_ZONE)
    if not pc.any(zoned).as_py():
        return pc.cast(values, pa.timestamp("us"))
    naive = pc.cast(pc.if_else(zoned, pa.scalar(None, pa.string()), values), pa.timestamp("us"))
    utc = pc.cast(pc.if_else(zoned, values, pa.scalar(None, pa.string())), pa.timestamp("us", "UTC"))
    return pc.if_else(zoned, pc.cast(utc, pa.timestamp("us")), naive)


def _caster(contract_type: str) -> Callable[[Column], Column]:
    if contract_type == "timestamp":
        return _cast_timestamp
    target = arrow_type(contract_type)
    return lambda values: pc.cast(values, target)


def _failing(values: pa.Array, cast: Callable[[Column], Column]) -> list[int]:
    """Positions whose cast fails, found by halving (few casts when failures are few)."""
    try:
        cast(values)
        return []
    except _CAST_ERRORS:
        pass
    if len(values) <= _LEAF:
        bad = []
        for i in range(len(values)):
            try:
                cast(values.slice(i, 1))
            except _CAST_ERRORS:
                bad.append(i)
        return bad
    mid = len(values) // 2
    return _failing(values.slice(0, mid), cast) + [mid + i for i in _failing(values.slice(mid), cast)]


def _syntax(contract_type: str) -> str | None:
    if contract_type in ("int32", "int64"):
        return _INT_SYNTAX
    if contract_type == "date":
        return _DATE_SYNTAX
    if contract_type == "timestamp":
        return _TS_SYNTAX
    if contract_type.startswith("decimal"):
        return _DECIMAL_SYNTAX
    return None


def describe(value: str, contract_type: str) -> str:
    """Why `value` is not a `contract_type` (value quoted, shortened)."""
    shown = repr(shorten(value))
    if contract_type in ("int32", "int64"):
        if re.fullmatch(_INT_SYNTAX, value.strip()):
            return f"{shown} is out of range for {contract_type}"
        return f"{shown} is not an integer"
    if contract_type.startswith("decimal"):
        return _describe_decimal(value.strip(), shown, contract_type)
    if contract_type == "date":
        if _DATE_SHAPE.fullmatch(value.strip()):
            return f"{shown} is not a calendar date"
        return f"{shown} is not a date (expected YYYY-MM-DD)"
    if contract_type == "timestamp":
        return f"{shown} is not a timestamp (expected ISO 8601, e.g. 2024-03-07T12:30:00, up to microseconds)"
    if contract_type == "bool":
        return f"{shown} is not a boolean (expected true, false, 1 or 0)"
    return f"{shown} is not a {contract_type} number"


def _describe_decimal(value: str, shown: str, contract_type: str) -> str:
    m = DECIMAL_RE.match(contract_type)
    precision, scale = (int(m.group(1)), int(m.group(2))) if m else (38, 0)
    try:
        number = Decimal(value)
    except InvalidOperation:
        number = None
    if number is None or not number.is_finite() or not re.fullmatch(_DECIMAL_SYNTAX, value):
        return f"{shown} is not a decimal number"
    # exact: precision as long as the value, exponents unbounded (the default context rounds to 28
    # digits and overflows past 1e999999, and a value is quoted as written, e.g. '3e6015256')
    exact = Context(prec=max(1, len(number.as_tuple().digits)), Emax=MAX_EMAX, Emin=MIN_EMIN)
    _, digits, exponent = number.normalize(exact).as_tuple()
    exponent = int(exponent)  # finite, so never 'n'/'N'/'F'
    places = max(0, -exponent)
    if places > scale:
        return f"{shown} has {places} decimal places, {contract_type} allows {scale}"
    whole = len(digits) + exponent if digits != (0,) else 0
    return f"{shown} has {whole} digits before the decimal point, {contract_type} allows {precision - scale}"


_INT_LIMITS = {"int32": ("2147483647", "2147483648"), "int64": ("9223372036854775807", "9223372036854775808")}
_DAYS_IN_MONTH = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])


def _positions(mask: Column) -> np.ndarray:
    return np.flatnonzero(np.asarray(mask.fill_null(False)))


def _violations(values: pa.Array, contract_type: str) -> np.ndarray:
    """Positions of well-formed values that break a rule the pattern cannot see, found vectorised.

    Integer range, decimal precision and scale (plain notation), and calendar dates: a file full of
    such values would otherwise cost a bisection per value.
    """
    if contract_type in _INT_LIMITS:
        positive, negative = _INT_LIMITS[contract_type]
        magnitude = pc.utf8_ltrim(pc.utf8_ltrim(values, characters="-"), characters="0")
        length = pc.utf8_length(magnitude)
        limit = pc.if_else(pc.starts_with(values, "-"), negative, positive)
        at_limit = pc.and_(pc.equal(length, len(positive)), pc.greater(magnitude, limit))
        return _positions(pc.or_(pc.greater(length, len(positive)), at_limit))
    m = DECIMAL_RE.match(contract_type)
    if m:
        precision, scale = int(m.group(1)), int(m.group(2))
        parts = pc.extract_regex(values, r"^[+-]?(?P<whole>[0-9]*)\.?(?P<fraction>[0-9]*)$")  # no exponent
        whole = pc.utf8_length(pc.utf8_ltrim(pc.struct_field(parts, "whole"), characters="0"))
        fraction = pc.utf8_length(pc.utf8_rtrim(pc.struct_field(parts, "fraction"), characters="0"))
        return _positions(pc.or_(pc.greater(whole, precision - scale), pc.greater(fraction, scale)))
    if contract_type == "date":
        year, month, day = (
            np.asarray(pc.cast(pc.utf8_slice_codeunits(values, a, b), pa.int32()).fill_null(1))
            for a, b in ((0, 4), (5, 7), (8, 10))
        )
        leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
        limit = _DAYS_IN_MONTH[month] + ((month == 2) & leap)
        return np.flatnonzero(((day > limit) | (year == 0)) & np.asarray(pc.is_valid(values)))
    return np.zeros(0, dtype=np.int64)


def _null_empty(values: Column) -> Column:
    if pc.min(pc.binary_length(values)).as_py() == 0:  # cheaper than comparing every value to ""
        return pc.if_else(pc.equal(values, ""), pa.scalar(None, values.type), values)
    return values


def _fast(values: Column, contract_type: str) -> Column | None:
    """One cast of the untrimmed values, or None when the slow path must decide."""
    try:
        typed = _caster(contract_type)(values)
    except _CAST_ERRORS:
        return None
    # Where pyarrow accepts more than the rules, check the rules; each pre-check is a cheap literal scan.
    if contract_type in ("int32", "int64") and _holds_byte(values, b"xX"):
        return None  # pyarrow reads hexadecimal (0x1F)
    if (
        contract_type.startswith("decimal")
        and _holds_byte(values, b"eE")
        and not pc.all(pc.match_substring_regex(values, _DECIMAL_SYNTAX)).as_py()
    ):
        return None  # pyarrow reads '1e0x9' as 1
    return typed


def _holds_byte(values: Column, chars: bytes) -> bool:
    """Does any value hold one of the ASCII `chars`? One scan of the bytes behind the values (a few
    ms for a million values), not one string kernel per character."""
    for chunk in values.chunks if isinstance(values, pa.ChunkedArray) else [values]:
        if chunk.type != pa.string():
            return any(pc.any(pc.match_substring(chunk, chr(c))).as_py() for c in chars)
        _, offsets, data = chunk.buffers()
        if data is None or not len(chunk):
            continue
        bounds = np.frombuffer(offsets, dtype=np.int32, count=len(chunk) + 1, offset=4 * chunk.offset)
        text = np.frombuffer(data, dtype=np.uint8)[bounds[0] : bounds[-1]]
        if any(np.any(text == c) for c in chars):
            return True
    return False


def _without(values: pa.Array, bad: np.ndarray) -> pa.Array:
    """`values` with the positions in `bad` set to null."""
    if not len(bad):
        return values
    mask = np.zeros(len(values), dtype=bool)
    mask[bad] = True
    return pc.if_else(pa.array(mask), pa.scalar(None, values.type), values)


def cast_typed(values: Column, contract_type: str) -> tuple[Column, dict[int, str]]:
    """Cast values a reader already typed (e.g. a wider decimal) to the contract type, locating failures."""
    cast = _caster(contract_type)
    try:
        return cast(values), {}
    except _CAST_ERRORS:
        pass
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    bad = np.array(_failing(values, cast), dtype=np.int64)
    shown = values.take(pa.array(bad)).to_pylist()
    return cast(_without(values, bad)), {
        int(i): describe(str(v), contract_type) for i, v in zip(bad, shown, strict=True)
    }


def cast_text(values: Column, contract_type: str) -> tuple[Column, dict[int, str]]:
    """Cast strings; returns the typed values (null where bad) and {position: why}."""
    if values.type != pa.string():
        values = pc.cast(values, pa.string())
    values = _null_empty(values)
    if contract_type == "string":
        return values, {}
    typed = _fast(values, contract_type)
    if typed is not None:
        return typed, {}
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    trimmed = _null_empty(pc.utf8_trim_whitespace(values))
    values = trimmed
    if contract_type in ("int32", "int64"):
        values = pc.replace_substring_regex(values, r"^\+([0-9])", r"\1")  # pyarrow refuses a leading "+"
    syntax = _syntax(contract_type)
    ok = values
    bad = np.zeros(0, dtype=np.int64)
    if syntax is not None:
        wrong = pc.invert(pc.match_substring_regex(values, syntax)).fill_null(False)
        bad = np.flatnonzero(wrong.to_numpy(zero_copy_only=False))
        ok = pc.if_else(wrong, pa.scalar(None, pa.string()), values)
    violations = _violations(ok, contract_type)
    if len(violations):
        bad = np.union1d(bad, violations)
        ok = _without(ok, violations)
    cast = _caster(contract_type)
    failing = np.array(_failing(ok, cast), dtype=np.int64)  # safety net: rules not checked above
    bad = np.union1d(bad, failing)
    typed = cast(_without(values, bad))
    shown = trimmed.take(pa.array(bad)).to_pylist()
    return typed, {int(i): describe(v, contract_type) for i, v in zip(bad, shown, strict=True)}
