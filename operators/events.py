"""Decode: bytes -> a typed :class:`Event`, or a :class:`DeadLetter` with a reason code.

Nothing after this step sees raw JSON. The checks here mirror ``config/schemas/event.schema.json``
(a test holds the two together); they are hand-written because a JSON Schema validator costs
tens of microseconds per event and this runs on every message.
"""

from __future__ import annotations

import base64
import json
import re
from datetime import datetime, timedelta, timezone
from typing import Any, Optional

import orjson

from config.jsonsafe import clean_str, dumps as safe_dumps, has_surrogate

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MS = timedelta(milliseconds=1)

from operators.event_table import (FAMILIES, FAMILY_OF, ID_MAX_LEN, MAX_AMOUNT, MAX_QUANTITY, Family,  # noqa: F401
                                   types_of)

# the type sets, from the one table of input events (operators/event_table.py)
CLICKSTREAM_TYPES = types_of("clickstream")
ORDER_TYPES = types_of("orders")
CHAT_TYPES = types_of("chat")
PROFILE_TYPES = types_of("profile")  # topic crm.profile (operators/privacy.py)
CATALOG_TYPES = types_of("catalog")  # topic crm.catalog: keyed by product_id, no customer (operators/watch.py)
IDENTITY_TYPES = types_of("identity")  # on any topic: anonymous_id is now known as customer_id
EVENT_TYPES = frozenset(FAMILY_OF)
CONSENT_CHANNELS = frozenset({"email", "sms", "push", "all"})
CONSENT_PURPOSES = frozenset({"marketing", "service"})
CART_ACTIVITY = frozenset({"add_to_cart", "remove_from_cart", "checkout_started"})
SENDERS = frozenset({"customer", "agent", "bot"})

# Reason codes of dead letters: low-cardinality, used as metric labels.
REASONS = (
    "oversized", "malformed_json", "not_an_object", "missing_field", "wrong_type", "out_of_range",
    "unknown_type", "invalid_ts", "invalid_unicode", "processing_error", "future_ts", "identify_conflict",
    "consumer_error",
)

# The bounds validation states (CONTRACT.md section 1): inside them every sum, feature, timer
# and output the engine computes stays finite, in datetime's range and writable by orjson.
INT_ID_LIMIT = 1 << 64  # an integer id is 0 <= id < 2^64 and becomes its decimal string
YEAR_MIN, YEAR_MAX = 2000, 2199  # ISO timestamps: the year as written
TS_MIN_MS, TS_END_MS = 946_684_800_000, 7_258_118_400_000  # epoch numbers: [2000-01-01, 2200-01-01) UTC
# Identifier fields: a string, or a non-negative integer; a lone surrogate makes them a dead letter
# (replacing it would merge two customers, orders...). Free text is repaired instead.
ID_FIELDS = ("event_id", "customer_id", "session_id", "product_id", "order_id", "conversation_id", "anonymous_id")
TS_HOWTO = ("send ISO-8601 with a UTC offset (2026-11-23T10:15:00Z, 2026-11-23T11:15:00+01:00) "
            "or epoch seconds / milliseconds as a JSON number, years 2000..2199")


class Event:
    """A valid input event. ``ts`` is event time in epoch milliseconds (UTC)."""

    __slots__ = ("event_id", "type", "customer_id", "ts", "data", "source", "pos")

    def __init__(self, event_id: str, type: str, customer_id: str, ts: int, data: dict, source: str = "",
                 pos: int = 0):
        self.event_id = event_id
        self.type = type
        self.customer_id = customer_id
        self.ts = ts
        self.data = data
        self.source = source
        self.pos = pos  # position in the input (replay: merged line index; live: partition offset)

    def __lt__(self, other: "Event") -> bool:
        """Never less: in a heap keyed ``(ts, event_id, event)`` two events alike in both (one id
        sent twice with different content) tie instead of raising (the first pushed stays first
        in ``heapq``'s sift only by chance, so callers order by more than that when it matters)."""
        return False

    def get(self, field: str, default: Any = None) -> Any:
        return self.data.get(field, default)

    def __repr__(self) -> str:
        return f"Event({self.type}, {self.customer_id}, {format_ts(self.ts)}, {self.event_id})"

    def __reduce__(self):
        return (Event, (self.event_id, self.type, self.customer_id, self.ts, self.data, self.source, self.pos))


class DeadLetter:
    """An input that could not be used, kept with its raw bytes and why."""

    __slots__ = ("raw", "source", "reason", "detail")

    def __init__(self, raw: bytes, source: str, reason: str, detail: str = ""):
        self.raw = raw
        self.source = source
        self.reason = reason
        self.detail = detail

    def to_json(self) -> dict:
        """The dead-letter record; every string in it encodes as UTF-8 (a sink never refuses it)."""
        try:
            raw, encoding = self.raw.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            raw, encoding = base64.b64encode(self.raw).decode("ascii"), "base64"
        return {"reason": self.reason, "detail": clean_str(self.detail), "source": clean_str(self.source),
                "raw": raw, "raw_encoding": encoding}

    @classmethod
    def of_event(cls, ev: "Event", reason: str, detail: str) -> "DeadLetter":
        """An event the engine failed on, re-encoded (never raises, whatever the event holds)."""
        return cls(safe_dumps(ev.data), ev.source, reason, clean_str(detail))

    def __repr__(self) -> str:
        return f"DeadLetter({self.reason}: {self.detail}, {self.source})"

    def __reduce__(self):
        return (DeadLetter, (self.raw, self.source, self.reason, self.detail))


class Invalid(Exception):
    def __init__(self, reason: str, detail: str = ""):
        super().__init__(reason, detail)
        self.reason = reason
        self.detail = detail


_TS = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:\d{2})")


def parse_ts(value: Any, field: str = "ts") -> int:
    """ISO-8601 with a UTC offset (``Z`` or ``+hh:mm``), year 2000..2199 as written -> epoch
    milliseconds; else :class:`Invalid` (``invalid_ts``, the detail says what to send instead).
    (All C calls: a hand-written parser of the canonical form measured slower.)"""
    if type(value) is not str:
        raise Invalid("invalid_ts", f"{field}: not a string; {TS_HOWTO}")
    if not _TS.fullmatch(value):
        problem = "no UTC offset" if _TS.fullmatch(value + "Z") else "not ISO-8601"
        raise Invalid("invalid_ts", f"{field}: {problem}; {TS_HOWTO}")
    if not YEAR_MIN <= int(value[:4]) <= YEAR_MAX:
        raise Invalid("invalid_ts", f"{field}: year {value[:4]} outside {YEAR_MIN}..{YEAR_MAX}")
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        raise Invalid("invalid_ts", f"{field}: not a calendar date; {TS_HOWTO}") from None
    return (dt - EPOCH) // _MS


def event_time(value: Any, field: str = "ts") -> int:
    """A timestamp as the contract takes it -> epoch milliseconds: an ISO string (:func:`parse_ts`)
    or a JSON number of epoch seconds in [946684800, 7258118400) or epoch milliseconds in
    [946684800000, 7258118400000), i.e. 2000-01-01 to 2200-01-01 UTC. The two ranges are disjoint,
    so a number is never ambiguous; seconds may carry a fraction (kept to the millisecond)."""
    t = type(value)
    if t is str:
        return parse_ts(value, field)
    if (t is int or t is float) and value == value:
        if TS_MIN_MS <= value < TS_END_MS:
            return int(round(value))
        if TS_MIN_MS // 1000 <= value < TS_END_MS // 1000:
            return int(round(value * 1000))
        raise Invalid("invalid_ts", f"{field}: epoch number outside seconds/milliseconds of 2000..2199; {TS_HOWTO}")
    raise Invalid("invalid_ts", f"{field}: {TS_HOWTO}")


_MIN_MS, _MAX_MS = -62_135_596_800_000, 253_402_300_799_999  # datetime's own range, 0001..9999


def format_ts(ms: int) -> str:
    """Epoch milliseconds -> ``2026-11-23T10:15:00.000Z`` (clamped to years 1..9999: never raises)."""
    if not _MIN_MS <= ms <= _MAX_MS:
        ms = _MIN_MS if ms < _MIN_MS else _MAX_MS
    return (EPOCH + timedelta(milliseconds=ms)).isoformat(timespec="milliseconds").replace("+00:00", "Z")


_MISSING = object()


def _present(obj: dict, field: str, required: bool) -> Any:
    """The value, or ``_MISSING`` when absent; a ``null`` is a wrong type, never "absent"."""
    v = obj.get(field, _MISSING)
    if v is _MISSING:
        if required:
            raise Invalid("missing_field", field)
    elif v is None:
        if required:
            raise Invalid("missing_field", field)
        raise Invalid("wrong_type", field)
    return v


def _str(obj: dict, field: str, required: bool, max_len: int = 0) -> None:
    v = _present(obj, field, required)
    if v is _MISSING:
        return
    if type(v) is not str:
        raise Invalid("wrong_type", field)
    if max_len and not 0 < len(v) <= max_len:
        raise Invalid("out_of_range", f"{field}: 1..{max_len} characters")


def _id(obj: dict, field: str, required: bool, max_len: int = 0) -> None:
    """An identifier: a string, or a JSON integer 0 <= id < 2^64 stored as its decimal string."""
    v = _present(obj, field, required)
    if type(v) is float and v.is_integer():  # JSON has one number type: 42.0 is the integer 42
        v = int(v)
    if type(v) is int:
        if not 0 <= v < INT_ID_LIMIT:
            raise Invalid("out_of_range", f"{field}: an integer id must be 0 <= id < 2^64; or send a string")
        v = obj[field] = str(v)
    elif v is not _MISSING and type(v) is not str:
        raise Invalid("wrong_type", f"{field}: send a string or an integer")
    _str(obj, field, required, max_len)


def _number(obj: dict, field: str, required: bool) -> None:
    v = _present(obj, field, required)
    if v is _MISSING:
        return
    if type(v) not in (int, float):
        raise Invalid("wrong_type", field)
    if not 0 <= v <= MAX_AMOUNT:  # also NaN and the infinities
        raise Invalid("out_of_range", f"{field}: a finite number 0..{MAX_AMOUNT:.0e}")


def _int(obj: dict, field: str, lo: int, hi: int) -> None:
    v = _present(obj, field, False)
    if v is _MISSING:
        return
    if type(v) is float and v.is_integer():  # JSON has one number type: 2.0 is the integer 2
        v = obj[field] = int(v)
    if type(v) is not int:
        raise Invalid("wrong_type", field)
    if not lo <= v <= hi:
        raise Invalid("out_of_range", f"{field}: an integer {lo}..{hi}")


def _check_items(obj: dict) -> None:
    items = _present(obj, "items", False)
    if items is _MISSING:
        return
    if type(items) is not list:
        raise Invalid("wrong_type", "items")
    try:
        for item in items:
            if type(item) is not dict:
                raise Invalid("wrong_type", "items")
            _id(item, "product_id", True)
            _int(item, "quantity", 1, MAX_QUANTITY)
            _number(item, "price", False)
    except Invalid as exc:  # a malformed line item makes the whole `items` field the wrong shape
        reason = exc.reason if exc.reason == "out_of_range" else "wrong_type"
        raise Invalid(reason, "items" if exc.detail == "items" else f"items.{exc.detail}") from None


def _check_clickstream(t: str, obj: dict) -> None:
    """Most input is clickstream: each field is first checked inline for its usual good shape, and
    only otherwise by the checker that names what is wrong (same verdicts, a third of the time)."""
    g = obj.get
    if type(g("session_id")) is not str:
        _id(obj, "session_id", True)
    needs_product = t in CART_ACTIVITY and t != "checkout_started" or t == "product_view"
    v = g("product_id", _MISSING)
    if type(v) is not str and (needs_product or v is not _MISSING):
        _id(obj, "product_id", needs_product)
    v = g("price", _MISSING)
    if not ((type(v) is float or type(v) is int) and 0 <= v <= MAX_AMOUNT
            or (v is _MISSING and t != "add_to_cart")):
        _number(obj, "price", t == "add_to_cart")
    v = g("quantity", _MISSING)
    if v is not _MISSING and not (type(v) is int and 1 <= v <= MAX_QUANTITY):
        _int(obj, "quantity", 1, MAX_QUANTITY)
    v = g("query", _MISSING)
    if v is not _MISSING and type(v) is not str:
        _str(obj, "query", False)
    v = g("page", _MISSING)
    if v is not _MISSING and type(v) is not str:
        _str(obj, "page", False)


def _check_order(t: str, obj: dict) -> None:
    _id(obj, "order_id", True)
    placed = t == "order_placed"
    _number(obj, "total", placed)
    _check_items(obj)
    promised = _present(obj, "promised_delivery_ts", False)  # digital goods: a purchase with no promise
    if promised is not _MISSING:
        _promise(obj, promised)
    _str(obj, "reason", False)


# the schema's timestamp shape with any year (its no_promise_sentinel), for the no-promise dates
_ISO_ANY_YEAR = re.compile(r"[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]"
                           r"(:[0-5][0-9](\.[0-9]+)?)?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])")


def _promise(obj: dict, value: Any) -> None:
    """A promised delivery time; a well-formed ISO date with a year outside 2000..2199 (the "no date"
    sentinels 9999-12-31T23:59:59Z, 0001-01-01T00:00:00Z...) means *no promise*: the field is
    dropped (the order is tracked, only the promise_missed apology needs a date). An epoch number
    is stored as the ISO string it stands for (the state machine reads that)."""
    try:
        ms = event_time(value, "promised_delivery_ts")
    except Invalid:
        if type(value) is str and _ISO_ANY_YEAR.fullmatch(value) and not YEAR_MIN <= int(value[:4]) <= YEAR_MAX:
            del obj["promised_delivery_ts"]
            obj["promised_delivery_ts_ignored"] = value
            return
        raise
    if type(value) is not str:
        obj["promised_delivery_ts"] = format_ts(ms)


def _check_chat(t: str, obj: dict) -> None:
    """Field types hold across the topic; which fields are required depends on the type."""
    _id(obj, "conversation_id", True)
    message = t == "chat_message"
    sender = _present(obj, "sender", message)
    if sender is not _MISSING and (type(sender) is not str or sender not in SENDERS):
        raise Invalid("wrong_type", "sender")
    _str(obj, "text", message)
    _int(obj, "csat", 1, 5)
    esc = _present(obj, "escalated", False)
    if esc is not _MISSING and type(esc) is not bool:
        raise Invalid("wrong_type", "escalated")


def _check_profile(t: str, obj: dict) -> None:
    """``consent_updated``: channel, purpose and granted are required and from their sets;
    ``erasure_requested`` needs nothing beyond the fields every event has."""
    if t != "consent_updated":
        return
    for field, allowed in (("channel", CONSENT_CHANNELS), ("purpose", CONSENT_PURPOSES)):
        v = _present(obj, field, True)
        if type(v) is not str or v not in allowed:
            raise Invalid("wrong_type", f"{field}: one of {', '.join(sorted(allowed))}")
    if type(_present(obj, "granted", True)) is not bool:
        raise Invalid("wrong_type", "granted: true or false")


def _check_identify(t: str, obj: dict) -> None:
    _id(obj, "anonymous_id", True, ID_MAX_LEN)


def check_fields(fam: Family, t: str, obj: dict) -> None:
    """A family's fields checked from its declaration in the events table (the catalog's, a shop's
    own): required ones present, each of its kind and within its bounds; else :class:`Invalid`."""
    for f in fam.fields:
        req, kind, name = f.required_by(t), f.kind, f.name
        if kind == "id":
            _id(obj, name, req, ID_MAX_LEN if name == fam.key else 0)
        elif kind == "str":
            _str(obj, name, req)
        elif kind == "amount":
            _number(obj, name, req)
        elif kind == "int":
            if req:
                _present(obj, name, True)
            _int(obj, name, int(f.lo), int(f.hi))
        elif kind == "bool":
            v = _present(obj, name, req)
            if v is not _MISSING and type(v) is not bool:
                raise Invalid("wrong_type", f"{name}: true or false")
        elif kind == "enum":
            v = _present(obj, name, req)
            if v is not _MISSING and (type(v) is not str or v not in f.choices):
                raise Invalid("wrong_type", f"{name}: one of {', '.join(sorted(f.choices))}")
        elif kind == "items":
            _check_items(obj)
        else:  # a time: the decoder's own rules
            v = _present(obj, name, req)
            if v is not _MISSING:
                event_time(v, name)


# family -> its hand-written checker (the busy families: inline fast paths, same verdicts as the
# table); a family without one is checked from the table by check_fields
_CHECKERS = {"clickstream": _check_clickstream, "orders": _check_order, "chat": _check_chat,
             "profile": _check_profile, "identity": _check_identify}


def validate(obj: Any, source: str = "") -> Event:
    """A parsed JSON value -> :class:`Event`, or raise :class:`Invalid`. An event whose type is in no
    family of the events table is ``unknown_type``; a catalog event (keyed by ``product_id``) needs
    no ``customer_id`` and gets ``""`` as its customer."""
    if type(obj) is not dict:
        raise Invalid("not_an_object", type(obj).__name__)
    v = obj.get("event_id")
    if not (type(v) is str and 0 < len(v) <= ID_MAX_LEN):
        _id(obj, "event_id", True, ID_MAX_LEN)
    t = obj.get("type")
    if t is None:
        raise Invalid("missing_field", "type")
    if type(t) is not str:
        raise Invalid("wrong_type", "type")
    fam = FAMILY_OF.get(t)
    if fam is not None and fam.key == "customer_id":
        v = obj.get("customer_id")
        if not (type(v) is str and 0 < len(v) <= ID_MAX_LEN):
            _id(obj, "customer_id", True, ID_MAX_LEN)
    if "ts" not in obj:
        raise Invalid("missing_field", "ts")
    ts = event_time(obj["ts"])
    if fam is None:
        raise Invalid("unknown_type", clean_str(t[:64]))
    checker = _CHECKERS.get(fam.name)
    if checker is not None:
        checker(t, obj)
    else:
        check_fields(fam, t, obj)
    if fam.key != "customer_id":
        return Event(obj["event_id"], t, "", ts, obj, source)
    return Event(obj["event_id"], t, obj["customer_id"], ts, obj, source)


_NOT_PARSED = object()


def decode(raw: bytes, source: str = "", max_bytes: int = 65536, parsed: Any = _NOT_PARSED) -> Event | DeadLetter:
    """Never raises: every input becomes an Event or a DeadLetter.

    ``parsed`` lets a source that already parsed the bytes (to merge logs by ``ts``) skip a
    second ``orjson.loads``; pass :data:`PARSE_FAILED` when its parse failed.
    """
    if len(raw) > max_bytes:
        return DeadLetter(raw, source, "oversized", f"{len(raw)} bytes")
    try:
        if parsed is _NOT_PARSED:
            parsed = orjson.loads(raw)
        elif parsed is PARSE_FAILED:
            raise orjson.JSONDecodeError("unparsable", "", 0)
        return validate(parsed, source)
    except Invalid as exc:
        return DeadLetter(raw, source, exc.reason, exc.detail)
    except orjson.JSONDecodeError:
        return _decode_slow(raw, source)
    except Exception as exc:  # defensive: a decoder bug must not stop the flow
        return DeadLetter(raw, source, "malformed_json", f"{type(exc).__name__}")


PARSE_FAILED = object()


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _decode_slow(raw: bytes, source: str) -> Event | DeadLetter:
    """What orjson refuses but JSON allows gets a second chance with the standard library: numbers
    beyond a double (``1e400`` in an extra field) and lone UTF-16 surrogates (``"\\ud83d"``, text
    cut inside an emoji). A surrogate in an identifier is a dead letter (``invalid_unicode``);
    anywhere else it becomes U+FFFD. NaN/Infinity literals and anything else are malformed."""
    try:
        obj = json.loads(raw.decode("utf-8"), parse_constant=_not_json)
        if b"\\u" in raw:
            obj = _repair_surrogates(obj)
        return validate(obj, source)
    except Invalid as exc:
        return DeadLetter(raw, source, exc.reason, exc.detail)
    except Exception:
        return DeadLetter(raw, source, "malformed_json", "")


def _repair_surrogates(obj: Any) -> Any:
    """Identifiers with a lone surrogate raise ``invalid_unicode``; every other string (keys too)
    gets U+FFFD in its place. Iterative: nesting depth costs no recursion."""
    if type(obj) is dict:
        for field in ID_FIELDS:
            v = obj.get(field)
            if type(v) is str and has_surrogate(v):
                raise Invalid("invalid_unicode", f"{field}: lone UTF-16 surrogate; send valid UTF-8 "
                                                 "(an identifier is never repaired)")
        items = obj.get("items")
        if type(items) is list and any(type(i) is dict and type(i.get("product_id")) is str
                                       and has_surrogate(i["product_id"]) for i in items):
            raise Invalid("invalid_unicode", "items.product_id: lone UTF-16 surrogate; send valid UTF-8")
    root = [obj]
    stack: list = [root]
    while stack:
        node = stack.pop()
        pairs = list(node.items()) if type(node) is dict else list(enumerate(node))
        if type(node) is dict and any(type(k) is str and has_surrogate(k) for k, _ in pairs):
            node.clear()
            node.update((clean_str(k), v) for k, v in pairs)
            pairs = list(node.items())
        for k, v in pairs:
            if type(v) is str:
                if has_surrogate(v):
                    node[k] = clean_str(v)
            elif type(v) is dict or type(v) is list:
                stack.append(v)
    return root[0]
