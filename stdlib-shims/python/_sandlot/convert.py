"""A value main() returned, as JSON: NaN and infinities become None; numpy and pandas values,
dates and decimals become plain JSON; anything else is an invalid return naming its path (or,
FastGPT's way, its str())."""

import json
import math

_encode_key = json.JSONEncoder().encode
_isfinite = math.isfinite
_datetime = __import__("datetime")
_Decimal = __import__("decimal").Decimal


class InvalidReturn(Exception):
    pass


def encode(value, encode_json, lenient=False):
    """`value` as JSON text. A plain JSON value, nearly every return, goes straight to the C
    encoder; only what it refuses (NaN, numpy and pandas values, dates, a cycle, a key that is
    not a string) pays for the careful copy, which converts it or names the path at fault. The
    copy alone costs a 1 MB result ~38 ms."""
    try:
        return encode_json(value)
    except (TypeError, ValueError):
        return encode_json(to_json(value, "result", set(), lenient))


def to_json(value, path, active, lenient=False):
    """A JSON-ready copy of a returned value; NaN and infinities become None. `lenient` turns
    what JSON has no type for into its str() (json.dumps' default=str, as FastGPT does)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value) if _isfinite(value) else None
    if isinstance(value, (dict, list, tuple)):
        if id(value) in active:
            raise InvalidReturn(f"{path} refers back to itself; JSON cannot carry a cycle")
        active.add(id(value))
        try:
            if isinstance(value, dict):
                out = {}
                for key, item in value.items():
                    if isinstance(key, str):
                        name = key
                    elif key is None or isinstance(key, (bool, int, float)):
                        name = _encode_key(key)
                    else:
                        raise InvalidReturn(
                            f"{path} has a key of type {type(key).__name__}; "
                            "JSON object keys must be strings")
                    out[name] = to_json(item, f"{path}.{name}", active, lenient)
                return out
            return [to_json(item, f"{path}[{i}]", active, lenient)
                    for i, item in enumerate(value)]
        finally:
            active.discard(id(value))
    # Only what is neither a JSON type nor a container pays for the special cases.
    converted = _convert_special(value, lenient)
    if converted is not _NOT_SPECIAL:
        return to_json(converted, path, active, lenient)
    if lenient:
        return str(value)
    raise InvalidReturn(
        f"{path} is of type {type(value).__name__}, which JSON cannot carry; "
        "convert it to a str, number, bool, None, list or dict")


_NOT_SPECIAL = object()


def _convert_special(value, lenient):
    """numpy and pandas values, dates and decimals as plain Python (or _NOT_SPECIAL)."""
    module = type(value).__module__ or ""
    if module.startswith("numpy"):
        if hasattr(value, "tolist"):
            return value.tolist()  # arrays to lists, scalars to int/float/bool
    if module.startswith("pandas"):
        name = type(value).__name__
        if name == "DataFrame":
            return value.to_dict(orient="records")
        if name in ("Series", "Index", "DatetimeIndex", "Categorical"):
            return value.tolist()
        if name == "NaTType":
            return None
        if name == "Timestamp":
            return str(value) if lenient else value.isoformat()
        if name == "Timedelta":
            return str(value)
        if name in ("NAType",):
            return None
    if isinstance(value, (_datetime.datetime, _datetime.date, _datetime.time)):
        return str(value) if lenient else value.isoformat()
    if isinstance(value, _Decimal):
        if value.is_nan() or value.is_infinite():
            return None
        return str(value)
    return _NOT_SPECIAL
