"""Time units (ms, the engine's: operators.units) and the ISO-8601 text of the generated events (UTC, millisecond precision)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from operators.units import DAY, HOUR, MINUTE as MIN, SECOND as SEC  # noqa: F401 - the generator's short names

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_DAY_STR: dict[int, str] = {}
_MIN_STR: dict[int, str] = {}


def iso(ms: int) -> str:
    """Epoch milliseconds -> ``2026-01-05T10:15:03.120Z``."""
    m, r = divmod(ms, MIN)
    prefix = _MIN_STR.get(m)
    if prefix is None:
        prefix = _MIN_STR[m] = _iso_minute(m * MIN)
    s, milli = divmod(r, SEC)
    return f"{prefix}{s:02d}.{milli:03d}Z"


def _iso_minute(ms: int) -> str:
    d, r = divmod(ms, DAY)
    ds = _DAY_STR.get(d)
    if ds is None:
        ds = (_EPOCH + timedelta(days=d)).strftime("%Y-%m-%d")
        _DAY_STR[d] = ds
    h, r = divmod(r, HOUR)
    return f"{ds}T{h:02d}:{r // MIN:02d}:"


def parse_ts(text: str) -> int:
    """ISO-8601 text with an offset -> epoch ms; ValueError without an offset."""
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        raise ValueError(f"timestamp without UTC offset: {text}")
    return (dt - _EPOCH) // timedelta(milliseconds=1)
