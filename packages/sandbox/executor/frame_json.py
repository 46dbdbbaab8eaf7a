"""JSON for frames to the host: standard (no NaN or Infinity), valid UTF-8, and never larger than
the host accepts, whatever a kernel or a cell put into the value (docs/executor-protocol.md)."""

import json
import math

# The host ends the sandbox on a frame over 8 MiB; no JSON frame this executor sends comes near it.
MAX_JSON_FRAME = 4 * 1024 * 1024


def encode_json(obj):
    """Standard JSON (no NaN or Infinity, which the host refuses) in valid UTF-8, at most
    MAX_JSON_FRAME bytes: long strings (a huge exception message, a task's output) are cut."""
    try:
        payload = _dumps(obj)
    except (ValueError, TypeError, RecursionError):
        obj = _plain(obj)
        payload = _dumps(obj)
    cap = MAX_JSON_FRAME // 4
    while len(payload) > MAX_JSON_FRAME and cap >= 64:
        payload = _dumps(_shorten(_plain(obj), cap))
        cap //= 4
    if len(payload) > MAX_JSON_FRAME:
        payload = _dumps({"ev": "error", "code": "SandboxFailure", "message": "the executor could not send a message of %d bytes" % len(payload)})
    return payload


def _dumps(obj):
    text = json.dumps(obj, ensure_ascii=False, allow_nan=False)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: \u escapes keep the frame valid UTF-8
        return json.dumps(obj, allow_nan=False).encode("ascii")


def _plain(value, depth=0):
    """`value` as standard JSON can carry it: NaN and infinities as null, other types as text, 64 levels deep at most."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if depth >= 64:
        return None
    if isinstance(value, dict):
        return {str(k): _plain(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, depth + 1) for v in value]
    return "<%s>" % type(value).__name__


def _shorten(value, cap):
    """Every string over `cap` characters cut to it, saying how much was cut."""
    if isinstance(value, str) and len(value) > cap:
        return value[:cap] + "\n[codebox] %d more characters cut: too large to send\n" % (len(value) - cap)
    if isinstance(value, dict):
        return {k: _shorten(v, cap) for k, v in value.items()}
    if isinstance(value, list):
        return [_shorten(v, cap) for v in value]
    return value


def utf8_size(value):
    """What a display value costs against the call's output limit: its UTF-8 bytes (its JSON's when not a string)."""
    if isinstance(value, str):
        return len(value.encode("utf-8", "replace"))
    try:
        return len(_dumps(_plain(value)))
    except (ValueError, TypeError):
        return 64
