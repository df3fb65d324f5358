"""The input events, declared once: family -> default topic, key, types -> fields and bounds.

Decode and validation (``operators/events.py``), the Kafka settings (``kafka.topics`` maps a
family to its topic), the test helpers, the schema test and the generator all read this table.
Adding an input topic is one :class:`Family` here, one line in ``kafka.topics`` (its default),
and, when no hand-written checker exists for it, nothing else: :func:`check_fields` validates a
family from its declaration. Units: amounts are numbers ``0..MAX_AMOUNT``; times are validated
by the decoder (ISO-8601 with offset or epoch numbers -> ms since the epoch, UTC).

Pure data: no Bytewax, Kafka or Redis here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from config.settings import DEFAULT_TOPICS

MAX_AMOUNT = 1e12  # price, total, item price: 0..1e12 (VND/IDR totals fit; sums stay far from inf)
MAX_QUANTITY = 1_000_000
ID_MAX_LEN = 128  # event_id, customer_id
ANY = "*"  # in ``FieldSpec.required``: every type of the family


@dataclass(frozen=True)
class FieldSpec:
    """One field of a family. ``kind``: ``id`` (a string or an integer 0 <= id < 2^64, kept as its
    decimal string), ``str``, ``amount`` (a number 0..MAX_AMOUNT), ``int`` (an integer lo..hi),
    ``bool``, ``enum`` (one of ``choices``), ``time`` (an event time), ``items`` (order lines).
    ``required``: the types that need it (:data:`ANY`: all of the family's). ``sample``: a valid
    value (test helpers and the generator build minimal events from it)."""

    name: str
    kind: str
    required: frozenset = frozenset()
    lo: Optional[float] = None
    hi: Optional[float] = None
    choices: tuple = ()
    sample: Any = None

    def required_by(self, type: str) -> bool:
        return ANY in self.required or type in self.required


@dataclass(frozen=True)
class Family:
    """A group of event types sharing one input topic and one set of fields. ``key``: the field
    the family's events are keyed by downstream (``customer_id``; ``product_id`` for the catalog,
    whose events carry no customer). ``topic``: the default of ``kafka.topics[name]`` (``None``:
    the family has no topic of its own, its events come on any)."""

    name: str
    topic: Optional[str]
    types: tuple[str, ...]
    fields: tuple[FieldSpec, ...] = ()
    key: str = "customer_id"
    description: str = ""

    def field(self, name: str) -> Optional[FieldSpec]:
        return next((f for f in self.fields if f.name == name), None)

    def required(self, type: str) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields if f.required_by(type))


def _f(name: str, kind: str, *required: str, **kw: Any) -> FieldSpec:
    return FieldSpec(name, kind, frozenset(required), **kw)


_CART = ("add_to_cart", "remove_from_cart", "product_view")
_ORDERS = ("order_placed", "order_shipped", "order_delayed", "order_delivered", "order_cancelled",
           "return_requested", "refund_issued")

FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("clickstream", DEFAULT_TOPICS["clickstream"],
           ("page_view", "product_view", "search", "add_to_cart", "remove_from_cart", "checkout_started",
            "help_view"),
           (_f("session_id", "id", ANY, sample="s1"),
            _f("product_id", "id", *_CART, sample="p1"),
            _f("price", "amount", "add_to_cart", lo=0, hi=MAX_AMOUNT, sample=10.0),
            _f("quantity", "int", lo=1, hi=MAX_QUANTITY),
            _f("query", "str"), _f("page", "str")),
           description="browsing and the cart"),
    Family("orders", DEFAULT_TOPICS["orders"], _ORDERS,
           (_f("order_id", "id", ANY, sample="o1"),
            _f("total", "amount", "order_placed", lo=0, hi=MAX_AMOUNT, sample=50.0),
            _f("items", "items"),
            _f("promised_delivery_ts", "time"),
            _f("reason", "str")),
           description="the order lifecycle"),
    Family("chat", DEFAULT_TOPICS["chat"], ("chat_message", "chat_closed"),
           (_f("conversation_id", "id", ANY, sample="conv1"),
            _f("sender", "enum", "chat_message", choices=("customer", "agent", "bot"), sample="customer"),
            _f("text", "str", "chat_message", sample="hello"),
            _f("csat", "int", lo=1, hi=5),
            _f("escalated", "bool")),
           description="support conversations"),
    Family("profile", DEFAULT_TOPICS["profile"], ("consent_updated", "erasure_requested"),
           (_f("channel", "enum", "consent_updated", choices=("email", "sms", "push", "all"), sample="email"),
            _f("purpose", "enum", "consent_updated", choices=("marketing", "service"), sample="marketing"),
            _f("granted", "bool", "consent_updated", sample=True)),
           description="consent and erasure (operators/privacy.py, operators/consent.py)"),
    Family("catalog", DEFAULT_TOPICS["catalog"], ("price_changed", "stock_changed"),
           (_f("product_id", "id", ANY, sample="p1"),
            _f("price", "amount", "price_changed", lo=0, hi=MAX_AMOUNT, sample=9.0),
            _f("old_price", "amount", lo=0, hi=MAX_AMOUNT),
            _f("currency", "str"),
            _f("in_stock", "bool", "stock_changed", sample=True),
            _f("quantity", "int", lo=0, hi=MAX_QUANTITY)),
           key="product_id",
           description="prices and stock, keyed by product_id, no customer_id (operators/watch.py)"),
    Family("identity", None, ("identify",),
           (_f("anonymous_id", "id", ANY, sample="guest1"),),
           description="on any topic: anonymous_id is now known as customer_id"),
)}

FAMILY_OF: dict[str, Family] = {t: fam for fam in FAMILIES.values() for t in fam.types}
EVENT_TYPES = frozenset(FAMILY_OF)
COMMON_REQUIRED = ("event_id", "type", "ts")  # every event; customer_id too unless the family is keyed otherwise


def family_of(type: Any) -> Optional[Family]:
    """The family of an event type (``None``: not an input type; such an event is a dead letter)."""
    return FAMILY_OF.get(type) if type.__class__ is str else None


def types_of(name: str) -> frozenset:
    return frozenset(FAMILIES[name].types)


def needs_customer(type: str) -> bool:
    """Whether events of ``type`` must carry a ``customer_id`` (all but the product-keyed catalog)."""
    fam = FAMILY_OF.get(type)
    return fam is None or fam.key == "customer_id"


def required_fields(type: str) -> tuple[str, ...]:
    """Every field an event of ``type`` must carry (the common ones first)."""
    fam = FAMILY_OF[type]
    common = COMMON_REQUIRED[:2] + (("customer_id",) if fam.key == "customer_id" else ()) + COMMON_REQUIRED[2:]
    return common + fam.required(type)


def sample_fields(type: str) -> dict[str, Any]:
    """The required fields of ``type`` beyond the common ones, at their sample values."""
    fam = FAMILY_OF[type]
    return {f.name: f.sample for f in fam.fields if f.required_by(type)}


def default_topics() -> dict[str, str]:
    """``kafka.topics``' default (config.settings.DEFAULT_TOPICS): family -> topic, for every
    family with a topic of its own."""
    return {f.name: f.topic for f in FAMILIES.values() if f.topic is not None}


def family_of_topic(topics: dict[str, str], topic: str) -> Optional[str]:
    """The family a topic carries under ``topics`` (``None``: the topic is none of them)."""
    return next((fam for fam, t in topics.items() if t == topic), None)
