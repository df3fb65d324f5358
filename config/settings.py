"""The one typed settings object: defaults < TOML file (``--config``) < ``CRM_*`` environment.

Nested groups use ``__`` in environment names: ``CRM_ABANDONED_CART__IDLE=45m`` (units d, h, m, s),
``=PT45M`` (ISO-8601 duration) or ``=2700`` (seconds). A map's entries merge over its defaults, key
by key (``CRM_POLICY__COOLDOWN__PRICE_DROP=1d`` adds one cooldown; :class:`_Group`); lists replace.
Every number of the contract is a setting here.
A bad one is a :class:`SettingsError` of one line naming it as the user set it.
"""

from __future__ import annotations

import difflib
import os
import re
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit
from typing import Annotated, Any, ClassVar, Optional

from pydantic import (AfterValidator, BaseModel, BeforeValidator, Field, SecretStr, TypeAdapter, ValidationError,
                      ValidationInfo, field_validator, model_validator)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

_TIMEDELTA = TypeAdapter(timedelta)
DURATION_HINT = "not a duration (write e.g. 30m, 1h30m, 7d, PT30M or 1800 seconds)"
_UNIT_SECONDS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_COMPACT = re.compile(r"^([+-]?)((?:\d+(?:\.\d+)?[dhms])+)$")
_PART = re.compile(r"(\d+(?:\.\d+)?)([dhms])")


def parse_duration(value: Any) -> Any:
    """A duration as users write it -> ``timedelta``: a number of seconds (``1800``, also as a string),
    compact units (``30m``, ``1h30m``, ``7d``, ``10s``, ``1.5h``), ISO-8601 (``PT30M``, ``P7D``) or
    ``HH:MM:SS``; a ``timedelta`` as it is. Raises ``ValueError`` (:data:`DURATION_HINT`) for anything else."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _finite(float(value))
    if not isinstance(value, str):
        raise ValueError(DURATION_HINT)
    text = value.strip().lower()
    try:
        return _finite(float(text))
    except ValueError:
        pass
    m = _COMPACT.match(text)
    if m:
        secs = sum(float(n) * _UNIT_SECONDS[u] for n, u in _PART.findall(m.group(2)))
        return _finite(-secs if m.group(1) == "-" else secs)
    try:
        return _TIMEDELTA.validate_python(value.strip())
    except ValidationError:
        raise ValueError(DURATION_HINT) from None


def _finite(secs: float) -> timedelta:
    if secs != secs or abs(secs) > 1e12:  # nan, inf: not a time anyone means
        raise ValueError(DURATION_HINT)
    return timedelta(seconds=secs)


def format_duration(d: timedelta) -> str:
    """The compact form :func:`parse_duration` reads back: ``30m``, ``1h30m``, ``7d``, ``0.5s``."""
    if d < timedelta(0):
        return "-" + format_duration(-d)
    whole, micros = d.days * 86400 + d.seconds, d.microseconds
    parts = []
    for unit, size in _UNIT_SECONDS.items():
        n, whole = divmod(whole, size) if unit != "s" else (whole, 0)
        if n:
            parts.append(f"{n}{unit}")
    if micros:
        secs = parts.pop() if parts and parts[-1].endswith("s") else "0s"
        parts.append(f"{secs[:-1]}.{micros:06d}".rstrip("0") + "s")
    return "".join(parts) or "0s"


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError("must be a positive duration (e.g. 30m, PT30M or 1800 seconds)")
    return value


Duration = Annotated[timedelta, BeforeValidator(parse_duration), AfterValidator(_positive)]


def ms(d: timedelta) -> int:
    """A duration in whole milliseconds, the unit of event time inside the engine."""
    return int(d.total_seconds() * 1000)


class _Group(BaseModel):
    """A settings group. Every map-valued setting in it (a ``dict`` field whose default has entries)
    is merged over its default, key by key: an entry given by a file or a variable changes that
    entry only (``CRM_POLICY__COOLDOWN__ABANDONED_CART=1h`` keeps ``proactive_outreach``'s cooldown);
    the sources themselves merge key by key too (environment over file over default)."""

    model_config = {"extra": "forbid"}

    @field_validator("*", mode="before")
    @classmethod
    def _map_over_default(cls, value: Any, info: ValidationInfo) -> Any:
        default = cls.model_fields[info.field_name].get_default(call_default_factory=True)
        return merge_map(default, value) if isinstance(default, dict) and default else value


def merge_map(default: dict, given: Any) -> Any:
    """``given`` (a map from a file, a variable or code) over ``default``, key by key; a map's entry
    cannot be removed, only changed. Raises ``ValueError`` for an empty map (it would change nothing,
    and in earlier versions it meant "none of the defaults"). Anything not a map is left to validation."""
    if not isinstance(given, dict):
        return given
    if not given:
        raise ValueError("an empty map changes nothing: entries merge over the defaults "
                         f"({', '.join(map(str, default))}); change an entry instead")
    return {**default, **given}


class TimeSettings(_Group):
    lateness: Duration = Field(timedelta(minutes=5), description="events older than the customer's clock by more than this are late")
    dedup_window: Duration = Field(timedelta(days=7), description="a repeated event_id within this much event time is a duplicate")
    max_event_bytes: int = Field(65536, gt=0, description="larger messages are dead letters (reason `oversized`)")
    service_fast_path: bool = Field(True, description="send an escalation asked for in words and a carrier's delay apology at arrival, not `lateness` later (exact event-time order otherwise)")
    max_future_skew: Duration = Field(timedelta(minutes=15), description="an event further ahead of the wall clock (live) or of the events after it in its log (replay) is a dead letter (reason `future_ts`)")


class AbandonedCartSettings(_Group):
    idle: Duration = Field(timedelta(minutes=30), description="no cart activity for this long after the last one: trigger due")
    currency: Optional[str] = Field(None, description="currency code put in payloads when events carry none")


class DelayApologySettings(_Group):
    grace: Duration = Field(timedelta(hours=2), description="promise missed by this much: trigger due")
    credit_rate: float = Field(0.05, ge=0, description="suggested credit as a share of the order total")
    credit_min: float = Field(2.0, ge=0, description="lower bound of the suggested credit")
    credit_max: float = Field(25.0, ge=0, description="upper bound of the suggested credit")
    tier_multiplier: dict[str, float] = Field(default_factory=lambda: {"new": 1.0, "regular": 1.25, "vip": 1.5},
                                              description="credit multiplier per value tier")


def _human_words() -> list[str]:
    """Asking for a person, in English, French, Spanish, German and Portuguese (folded: any case/accents).
    Generic words ("person", "Mensch", "una persona") only inside a request phrase."""
    en = ["human", "humans", "agent", "representative", "real person", "live person", "actual person",
          "someone real", "supervisor", "manager", "operator", "staff member"]
    en += [f"{verb} {prep} {who}" for verb in ("talk", "speak", "chat") for prep in ("to", "with")
           for who in ("a person", "someone", "somebody", "a real person", "a live person", "an actual person")]
    fr = ["humain", "un agent", "une agente", "conseiller", "conseillere", "operateur", "operatrice",
          "superviseur", "une vraie personne", "une personne reelle", "quelqu'un de reel", "parler a quelqu'un",
          "parler a une personne", "parler au responsable"]
    es = ["humano", "agente", "asesor", "asesora", "operador", "operadora", "representante", "persona real",
          "hablar con alguien", "hablar con una persona", "gerente", "supervisora"]
    de = ["mit einem mitarbeiter", "mit einer mitarbeiterin", "einen mitarbeiter", "mit einem menschen",
          "einen menschen", "echter mensch", "echten menschen", "echte person", "echten person",
          "mit einer person", "mit einem berater", "mit einer beraterin", "kundenberater", "kundenberaterin",
          "sachbearbeiter", "mit jemandem sprechen", "mit jemandem reden", "vorgesetzten"]
    pt = ["humano", "atendente", "agente", "pessoa real", "falar com alguem", "falar com uma pessoa", "operador",
          "operadora", "gerente", "supervisora", "atendimento humano"]
    return list(dict.fromkeys(en + fr + es + de + pt))


def _human_negations() -> list[str]:
    """Words that decline a person when they come shortly before the request in the same clause."""
    return ["no", "not", "don't", "dont", "do not", "doesn't", "does not", "didn't", "never", "without",
            "nor", "neither", "no need", "pas", "jamais", "sans", "aucun", "aucune", "ni", "nunca", "sin",
            "ningun", "ninguna", "kein", "keine", "keinen", "keinem", "nicht", "nie", "niemals", "ohne",
            "nao", "sem", "nem", "nenhum", "nenhuma"]


def _human_compounds() -> list[str]:
    """Things named with a person word that are not someone to talk to here (a match inside one is ignored)."""
    en = [f"{m} agent" for m in ("delivery", "shipping", "courier", "travel", "estate", "real estate", "insurance",
                                 "booking", "customs", "border", "secret", "free", "user", "cleaning", "double",
                                 "press", "literary")]
    en += [f"{m} manager" for m in ("password", "download", "task", "file", "package", "project", "window",
                                    "tag", "ad", "ads", "device", "extension", "plugin", "app", "warehouse",
                                    "content", "boot", "session", "network", "display")]
    en += ["human resources", "human error", "human rights", "human nature", "human readable",
           "human-readable", "user agent", "agent string", "operator error", "network operator",
           "mobile operator", "tour operator", "machine operator", "crane operator", "supervisor mode"]
    romance = [f"{who} {what}" for who in ("agent", "agente") for what in (
        "de livraison", "de entrega", "da entrega", "de viagens", "de viaje", "de voyage", "de voyages",
        "de transporte", "de seguros", "immobilier", "inmobiliario", "imobiliario", "de change")]
    romance += ["gestionnaire de mots de passe", "erreur humaine", "error humano", "erro humano",
                "ressources humaines", "recursos humanos", "droits humains", "derechos humanos", "direitos humanos",
                "operateur mobile", "operador movil", "operadora de celular", "operadora de telefonia"]
    de = ["menschliches versagen", "menschlicher fehler", "menschenrechte"]
    return en + romance + de


class EscalationSettings(_Group):
    human_words: list[str] = Field(
        default_factory=_human_words,
        description="a customer message with one of these (whole words, any case/accents) asks for a human; "
                    "defaults cover en, fr, es, de, pt",
    )
    human_negations: list[str] = Field(
        default_factory=_human_negations,
        description="one of these up to 5 words before a human word, in the same clause, declines it "
                    "('no need for an agent')",
    )
    human_compounds: list[str] = Field(
        default_factory=_human_compounds,
        description="a human word inside one of these names something else ('delivery agent', "
                    "'password manager') and asks for nobody",
    )
    unanswered_count: int = Field(3, ge=2, description="customer messages in a row with no reply")
    unanswered_window: Duration = Field(timedelta(minutes=10), description="the unanswered run must fit in this")
    frustration_threshold: float = Field(0.8, ge=0, le=1, description="frustration probability that escalates")
    text_max_chars: int = Field(280, gt=0, description="message text in payloads is cut at this many characters")
    last_messages: int = Field(3, gt=0, description="messages carried in an escalation payload")


class ProactiveSettings(_Group):
    churn_threshold: float = Field(0.7, ge=0, le=1, description="churn probability that triggers outreach")
    session_gap: Duration = Field(timedelta(minutes=30), description="no clickstream for this long ends a session")
    rescore_every: Duration = Field(timedelta(days=7), description="an inactive customer's churn decision point this often, within the churn horizon")
    refresh_every: Duration = Field(timedelta(days=1), description="live: re-score an inactive customer's profile this often (no label, no trigger)")
    help_views: int = Field(3, ge=1, description="help_view events within help_window that trigger outreach")
    help_window: Duration = Field(timedelta(hours=1), description="window for help_views")
    exit_words: list[str] = Field(
        default_factory=lambda: [
            "cancel", "cancellation", "refund", "return", "returns", "close account",
            "delete account", "close my account", "delete my account", "unsubscribe", "terminate",
        ],
        description="a search query with one of these (whole words) shows an intent to leave",
    )


CONTRACT_RULES = ["abandoned_cart", "delay_apology", "escalation", "proactive_outreach"]
CATALOG_RULES = ("price_drop", "back_in_stock")  # product-keyed: read crm.catalog (operators/watch.py)


class WatchSettings(_Group):
    window: Duration = Field(timedelta(days=14), description="price_drop / back_in_stock: customers who viewed or "
                                                               "carted the product within this before the change")
    min_drop: float = Field(0.05, ge=0, lt=1, description="price_drop: the new price is at least this fraction "
                                                          "below the previous one (old_price, else the last seen)")
    per_product: int = Field(1000, gt=0, description="watchers kept per product (the most recent; older ones go)")
    per_customer: int = Field(50, gt=0, description="products watched per customer, per product shard (the most "
                                                    "recent)")
    per_change: int = Field(10_000, gt=0, description="candidates one price or stock change sends at most (the "
                                                      "most recent watchers)")
RULE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")  # a trigger type (config/schemas/trigger.schema.json)
FIELD_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\[\])?(\.[A-Za-z_][A-Za-z0-9_]*(\[\])?)*$")
COMPARISONS = ("eq", "ne", "in", "not_in", "gt", "gte", "lt", "lte", "exists")
PAYLOAD_VALUES = ("$key", "$count", "$opened", "$last", "$due")  # what an episode knows beyond event fields


def _field_path(value: str) -> str:
    if not FIELD_PATH.match(value):
        raise ValueError(f"{value!r} is not a field path (`order_id`, `items[].product_id`, `a.b`)")
    return value


def _condition(value: Any) -> dict[str, Any]:
    """A filter on one field: a scalar (equals), a list (one of), or a table of comparisons."""
    if isinstance(value, list):
        return {"in": value}
    if not isinstance(value, dict):
        return {"eq": value}
    bad = sorted(set(value) - set(COMPARISONS))
    if bad:
        raise ValueError(f"unknown comparison {bad[0]!r} (one of {', '.join(COMPARISONS)})")
    for op in ("gt", "gte", "lt", "lte"):
        if op in value and (isinstance(value[op], bool) or not isinstance(value[op], (int, float))):
            raise ValueError(f"`{op}` compares numbers, not {value[op]!r}")
    for op in ("in", "not_in"):
        if op in value and not isinstance(value[op], list):
            raise ValueError(f"`{op}` takes a list")
    if "exists" in value and not isinstance(value["exists"], bool):
        raise ValueError("`exists` is true or false")
    return value


Condition = Annotated[Any, AfterValidator(_condition)]
FieldPath = Annotated[str, AfterValidator(_field_path)]


class EventMatch(_Group):
    """Events of ``type`` (one or a list) whose fields pass ``where``; ``key``: where the episode's
    key is read (default: the rule's ``key``; ``any`` on a cancel: every episode of the customer)."""

    type: list[str] = Field(min_length=1)
    where: dict[str, Condition] = Field(default_factory=dict)
    key: Optional[str] = None

    @model_validator(mode="before")
    @classmethod
    def _short(cls, v: Any) -> Any:
        if isinstance(v, str):  # "order_placed": that type, no filter
            return {"type": [v]}
        if isinstance(v, dict) and isinstance(v.get("type"), str):
            return {**v, "type": [v["type"]]}
        return v

    @field_validator("where")
    @classmethod
    def _paths(cls, v: dict) -> dict:
        for name in v:
            _field_path(name)
        return v

    @field_validator("key")
    @classmethod
    def _key(cls, v: Optional[str]) -> Optional[str]:
        return v if v in (None, "any", "customer") else _field_path(v)


class Due(_Group):
    """When a qualified episode fires: ``idle`` after its last event, a fixed ``delay`` after it
    qualified, or ``at`` the time in a field of the event that qualified it (plus ``after``)."""

    idle: Optional[Duration] = None
    delay: Optional[Duration] = None
    at: Optional[FieldPath] = None
    after: Optional[Duration] = None

    @model_validator(mode="after")
    def _one(self) -> "Due":
        given = [n for n in ("idle", "delay", "at") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of idle, delay, at")
        if self.after is not None and self.at is None:
            raise ValueError("`after` goes with `at`")
        return self


def _events(value: Any) -> Any:
    return [value] if isinstance(value, (str, dict)) else value


class DeclaredRule(_Group):
    """A trigger rule declared in the settings file (README, "Your own triggers"): an episode per
    ``key`` opened by ``open`` events, extended by ``extend``, ended by ``cancel``, firing at
    ``due`` once ``count`` opening events fell within ``window``."""

    name: str = Field(pattern=RULE_NAME.pattern)
    policy_class: str = Field("marketing", pattern="^(service|marketing)$")
    open: Annotated[list[EventMatch], BeforeValidator(_events)] = Field(min_length=1)
    key: str = "customer"
    extend: Annotated[list[EventMatch], BeforeValidator(_events)] = Field(default_factory=list)
    cancel: Annotated[list[EventMatch], BeforeValidator(_events)] = Field(default_factory=list)
    count: int = Field(1, ge=1, le=1000)
    window: Optional[Duration] = None
    due: Due
    rearm: str = Field("open", pattern="^(open|cancel)$")
    payload: dict[str, str] = Field(default_factory=dict)
    reason: Optional[str] = Field(None, pattern=r"^[a-z][a-z0-9_]{0,63}$")
    cooldown: Optional[Duration] = None
    priority: Optional[str] = Field(None, pattern="^(low|normal|high|urgent)$")
    expire: Duration = timedelta(days=30)

    @field_validator("key")
    @classmethod
    def _key(cls, v: str) -> str:
        return v if v == "customer" else _field_path(v)

    @field_validator("payload")
    @classmethod
    def _payload(cls, v: dict[str, str]) -> dict[str, str]:
        for name, source in v.items():
            if source.startswith("$") and source not in PAYLOAD_VALUES:
                raise ValueError(f"{name}: {source!r} is none of {', '.join(PAYLOAD_VALUES)}")
            if not source.startswith("$"):
                _field_path(source)
        return v

    @model_validator(mode="after")
    def _consistent(self) -> "DeclaredRule":
        if self.name in CONTRACT_RULES:
            raise ValueError(f"{self.name!r} is a contract rule (its settings have their own group)")
        if self.count > 1 and self.window is None:
            raise ValueError("count > 1 needs a window")
        if self.cooldown is not None and self.policy_class == "service":
            raise ValueError("cooldown: service triggers always go out (a cooldown is for marketing)")
        if any(m.key == "any" for m in self.open + self.extend):
            raise ValueError("key `any` is for cancel only")
        return self

    def __str__(self) -> str:
        return self.name


def _declared(value: Any) -> Any:
    """Each definition validated on its own, so the error names the rule and its field in one line."""
    if not isinstance(value, list):
        return value
    out, names = [], set()
    for i, item in enumerate(value):
        if isinstance(item, DeclaredRule):
            rule = item
        else:
            name = item.get("name", f"#{i + 1}") if isinstance(item, dict) else f"#{i + 1}"
            try:
                rule = DeclaredRule.model_validate(item)
            except ValidationError as exc:
                err = exc.errors()[0]
                where = ".".join(str(p) for p in err["loc"]) or "definition"
                msg = _problem(err["type"], err.get("ctx") or {}, err["msg"].removeprefix("Value error, "))
                raise ValueError(f"rule {name!r}, field {where}: {msg}") from None
        if rule.name in names:
            raise ValueError(f"rule {rule.name!r} is declared twice")
        names.add(rule.name)
        out.append(rule)
    return out


class RulesSettings(_Group):
    enabled: list[str] = Field(default_factory=lambda: list(CONTRACT_RULES),
                               description="trigger rules that run, by name (the contract's four, the catalogue's, those declared in `rules.declared`, and a shop's own registered under the `crm_stream.rules` entry point group); order breaks ties between timers due at the same ms")
    declared: Annotated[list[DeclaredRule], BeforeValidator(_declared)] = Field(
        default_factory=list,
        description="a shop's own trigger rules without Python (`[[rules.declared]]` tables, README \"Your own triggers\"); one named like a catalogue rule replaces it; each runs once listed in `rules.enabled`")
    max_episodes: int = Field(32, ge=1, le=10_000, description="declared and catalogue rules: open episodes kept per customer and rule (beyond it the least recently active goes)")
    max_wait: Duration = Field(timedelta(days=366), description="declared and catalogue rules: an episode due further than this after its event never opens (bounds timers read from fields)")

    @field_validator("enabled")
    @classmethod
    def _no_repeats(cls, v: list[str]) -> list[str]:
        repeated = sorted({n for n in v if v.count(n) > 1})
        if repeated:
            raise ValueError(f"rule {repeated[0]!r} is listed twice")
        return v


# --------------------------------------------------------------------------- the catalogue (issue 14)
# Flows most shops want, shipped as declared rules (rule_definitions): each runs once its name is in
# rules.enabled; its numbers are the groups below; a [[rules.declared]] of the same name replaces it.

class BrowseAbandonmentSettings(_Group):
    views: int = Field(3, ge=1, le=1000, description="browse_abandonment: views of one product within `window`")
    window: Duration = Field(timedelta(hours=24), description="browse_abandonment: the views must fit in this")
    wait: Duration = Field(timedelta(hours=4), description="browse_abandonment: due this long after the last view unless the product was carted or bought")
    cooldown: Duration = Field(timedelta(days=1), description="browse_abandonment: no second one within this (marketing)")


class PostPurchaseReviewSettings(_Group):
    after: Duration = Field(timedelta(days=7), description="post_purchase_review: due this long after the order's (last) `order_delivered`, unless `return_requested` or `refund_issued` for it")
    cooldown: Duration = Field(timedelta(days=3), description="post_purchase_review: no second one within this (marketing)")


class WinBackSettings(_Group):
    after: Duration = Field(timedelta(days=60), description="win_back: due this long after the customer's last `order_placed` with no order since")
    cooldown: Duration = Field(timedelta(days=30), description="win_back: no second one within this (marketing)")


class SupportSlaSettings(_Group):
    reply_within: Duration = Field(timedelta(minutes=15), description="support_sla_breach (service): a customer `chat_message` with no agent reply within this in an open conversation (once until the agent replies or the chat closes)")


class SatisfactionSurveySettings(_Group):
    after: Duration = Field(timedelta(hours=1), description="satisfaction_survey: due this long after a `chat_closed` without `csat`, unless the conversation goes on")
    cooldown: Duration = Field(timedelta(days=7), description="satisfaction_survey: no second one within this (marketing)")


class PolicySettings(_Group):
    marketing_cap: int = Field(2, ge=0, description="marketing triggers per cap_window")
    cap_window: Duration = Field(timedelta(hours=24), description="rolling window of the marketing cap")
    apology_quiet: Duration = Field(timedelta(hours=24), description="no marketing this long after a delay_apology")
    cooldown: dict[str, Duration] = Field(
        default_factory=lambda: {"abandoned_cart": timedelta(hours=24), "proactive_outreach": timedelta(days=7)},
        description="per marketing type: no second one of the type within this",
    )
    purchase_quiet: dict[str, Duration] = Field(
        default_factory=lambda: {"abandoned_cart": timedelta(hours=2)},
        description="per marketing type: none due within this after an `order_placed`",
    )
    max_trigger_age: Duration = Field(timedelta(hours=2),
                                      description="live: a marketing trigger due this long before the wall clock is "
                                                  "suppressed as `stale` (catch-up after an outage, a first start "
                                                  "over history); a replay only counts them (`stale_if_live`)")


class TierSettings(_Group):
    regular_orders: int = Field(1, ge=1, description="orders to become `regular`")
    vip_orders: int = Field(8, ge=1, description="orders to become `vip`")
    vip_spend: float = Field(1000.0, ge=0, description="lifetime spend to become `vip` (with at least one order)")
    vip_clv: Optional[float] = Field(None, ge=0, description="predicted_clv that makes a trigger's priority rise as for `vip` (none: off)")


class LabelSettings(_Group):
    churn_horizon: Duration = Field(timedelta(days=90), description="longest churn horizon: no event this long after a decision point is churned for anyone")
    churn_horizon_min: Duration = Field(timedelta(days=3), description="shortest churn horizon, however frequent the customer")
    churn_horizon_gaps: float = Field(4.0, gt=0, description="churn horizon in the customer's expected gaps between active days (within min..max)")
    conversation_abandoned: Duration = Field(timedelta(hours=24), description="open conversation silent this long: frustrated")
    frustrated_csat: int = Field(2, ge=1, le=5, description="csat at or below this labels a conversation frustrated")
    max_pending: int = Field(64, gt=0, description="pending predictions kept per customer before the oldest is dropped")


class ModelSettings(_Group):
    churn_estimator: str = Field("logreg", description="River pipeline of the churn model (models/estimators.py)")
    frustration_estimator: str = Field("logreg_text", description="River pipeline of the frustration model")
    warmup: int = Field(50, ge=0, description="labels a model learns from before it scores (validated, withheld)")
    min_outcomes: int = Field(20, ge=0, description="validated predictions of each outcome before a model's scores are used (0: no gate)")
    auc_floor: float = Field(0.6, ge=0, le=1, description="progressive ROC AUC a model needs for its scores to be used")
    clv_horizon: Duration = Field(timedelta(days=365), description="predicted_clv: expected spend over this much time")
    btyd_sample: int = Field(4000, gt=0, description="customers in each shard's BG/NBD / gamma-gamma fitting sample")
    btyd_min_customers: int = Field(200, gt=1, description="sampled buyers before the first BG/NBD fit")
    btyd_refit: Duration = Field(timedelta(days=7), description="refit the BG/NBD and gamma-gamma parameters this often (event time)")
    pending_max: int = Field(100_000, gt=0, description="predictions awaiting their label, per model and shard")
    shards: int = Field(0, ge=0, description="model shards (0 = one per worker)")


class RecsSettings(_Group):
    half_life: Duration = Field(timedelta(days=14), description="co-occurrence weights halve in this much event time")
    neighbours: int = Field(32, gt=0, description="neighbours kept per product in the shared table (M)")
    capacity: int = Field(64, gt=0, description="heavy-hitter sketch entries per product")
    top_k: int = Field(20, gt=0, description="entries of each crm:recs:{product_id} sorted set (K)")
    normalisation: str = Field("cosine", pattern="^(cosine|lift|confidence)$",
                               description="similarity: cosine c(A,B)/sqrt(n(A)n(B)), lift, or confidence c(A,B)/n(A)")
    in_payload: int = Field(5, ge=0, description="recommendations carried in a trigger payload")
    sequence_weight: float = Field(1.0, ge=0, description="weight of B viewed right after A (A -> B), on top of the co-view")
    recency: float = Field(0.5, gt=0, le=1, description="next-product lists: the r-th most recent product weighs recency^r")
    repeat_weight: float = Field(1.0, ge=0, description="next-product lists: a product the customer viewed scores this x its weight")


# Input topic per event family (the families, their types and fields: operators/event_table.py)
DEFAULT_TOPICS = {"clickstream": "crm.clickstream", "orders": "crm.orders", "chat": "crm.chat",
                  "profile": "crm.profile", "catalog": "crm.catalog"}
_TOPIC_ALIASES = {"clickstream_topic": "clickstream", "orders_topic": "orders", "chat_topic": "chat",
                  "profile_topic": "profile"}  # the settings before kafka.topics: still honoured


class KafkaSettings(_Group):
    bootstrap_servers: str = Field("localhost:9092", description="Kafka brokers, comma-separated")
    topics: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_TOPICS),
                                   description="input topic per event family (clickstream, orders, chat, profile, "
                                               "catalog); a family left out keeps its default, an empty name "
                                               "reads no topic for it (`CRM_KAFKA__TOPICS__CATALOG=shop.catalog`)")
    clickstream_topic: Optional[str] = Field(None, description="older name of topics.clickstream (wins when set)")
    orders_topic: Optional[str] = Field(None, description="older name of topics.orders (wins when set)")
    chat_topic: Optional[str] = Field(None, description="older name of topics.chat (wins when set)")
    profile_topic: Optional[str] = Field(None, description="older name of topics.profile (wins when set)")
    triggers_topic: str = Field("crm.triggers", description="output topic, key = customer_id")
    deadletter_topic: str = Field("crm.deadletter", description="dead letters with raw bytes and reason")
    audit_topic: str = Field("crm.audit", description="output topic: erasure_completed records, key = customer_id")
    starting_offset: str = Field("beginning", pattern="^(beginning|end)$",
                                 description="where a first run starts (later runs resume from recovery)")
    batch_size: int = Field(1000, gt=0, description="messages per consumer poll")
    fetch_wait_ms: int = Field(10, ge=0, description="longest a consumer fetch waits on the broker when idle (latency)")
    watermarks: bool = Field(True, description="hold timers and events for the slowest input partition "
                                               "(CONTRACT.md, time across topics); off, each topic is read on its "
                                               "own and a lagging one can fire a timer early")
    idle_after: Duration = Field(timedelta(seconds=30),
                                 description="an input partition that delivers nothing for this long stops holding "
                                             "timers back until it delivers again (CONTRACT.md, time across topics)")
    retry_give_up: Duration = Field(timedelta(minutes=10),
                                    description="how long the engine waits for an unreachable broker (at "
                                                "start, and for trigger and dead-letter acks) before it stops")
    security_protocol: str = Field("plaintext", pattern="^(plaintext|ssl|sasl_plaintext|sasl_ssl)$",
                                   description="librdkafka `security.protocol`: plaintext, ssl, sasl_plaintext "
                                               "or sasl_ssl")
    sasl_mechanism: Optional[str] = Field(None, pattern="^(PLAIN|SCRAM-SHA-256|SCRAM-SHA-512|OAUTHBEARER|GSSAPI)$",
                                          description="librdkafka `sasl.mechanism` (with a sasl_* protocol)")
    sasl_username: Optional[str] = Field(None, description="librdkafka `sasl.username`")
    sasl_password: Optional[SecretStr] = Field(None, description="librdkafka `sasl.password` (secret: masked in "
                                                                 "output and logs)")
    ssl_ca_location: Optional[Path] = Field(None, description="librdkafka `ssl.ca.location`: CA certificate(s) "
                                                              "the brokers' certificates are checked against")
    ssl_certificate_location: Optional[Path] = Field(None, description="librdkafka `ssl.certificate.location` "
                                                                       "(client certificate, mutual TLS)")
    ssl_key_location: Optional[Path] = Field(None, description="librdkafka `ssl.key.location` (client key)")
    ssl_key_password: Optional[SecretStr] = Field(None, description="librdkafka `ssl.key.password` (secret)")
    extra: dict[str, str] = Field(default_factory=dict,
                                  description="any other librdkafka properties, JSON in the environment "
                                              "(`{\"ssl.endpoint.identification.algorithm\": \"none\"}`); values of "
                                              "keys naming a password, secret or token are masked")

    @property
    def input_topics(self) -> list[str]:
        """Every family's topic (families with an empty name left out), in ``DEFAULT_TOPICS`` order."""
        return self.topics_of(list(self.topics))

    def topics_of(self, families: list[str]) -> list[str]:
        """The topics of ``families`` that are read (an empty name: not read), without repeats."""
        return list(dict.fromkeys(self.topics[f] for f in families if self.topics.get(f)))

    @model_validator(mode="after")
    def _topic_map(self) -> "KafkaSettings":
        """Defaults for the families left out, the older per-topic names on top; an unknown family
        fails at start (its events would be read by no code)."""
        unknown = sorted(set(self.topics) - set(DEFAULT_TOPICS))
        if unknown:
            raise ValueError(f"CRM_KAFKA__TOPICS: unknown event family {unknown[0]!r} "
                             f"(known: {', '.join(DEFAULT_TOPICS)})")
        topics = {**DEFAULT_TOPICS, **self.topics}
        for alias, family in _TOPIC_ALIASES.items():
            if getattr(self, alias) is not None:
                topics[family] = getattr(self, alias)
            object.__setattr__(self, alias, topics[family])  # read by older code and tests
        object.__setattr__(self, "topics", topics)
        return self

    @field_validator("security_protocol", mode="before")
    @classmethod
    def _lower(cls, v: Any) -> Any:
        return v.lower() if isinstance(v, str) else v  # librdkafka takes SASL_SSL as well

    @model_validator(mode="after")
    def _sasl_needs_a_sasl_protocol(self) -> "KafkaSettings":
        sasl = [n for n in ("sasl_mechanism", "sasl_username", "sasl_password") if getattr(self, n) is not None]
        if sasl and not self.security_protocol.startswith("sasl_"):
            raise ValueError(f"CRM_KAFKA__{sasl[0].upper()} is set but CRM_KAFKA__SECURITY_PROTOCOL is "
                             f"{self.security_protocol} (use sasl_ssl): the credentials would not be used")
        return self

    def client_config(self) -> dict[str, str]:
        """librdkafka properties every client (consumer, producer, admin) gets: the brokers, the
        security settings (secrets in clear: never log the result, see :func:`masked`), ``extra``."""
        out = {"bootstrap.servers": self.bootstrap_servers, "security.protocol": self.security_protocol}
        named = {"sasl.mechanism": self.sasl_mechanism, "sasl.username": self.sasl_username,
                 "sasl.password": self.sasl_password, "ssl.ca.location": self.ssl_ca_location,
                 "ssl.certificate.location": self.ssl_certificate_location,
                 "ssl.key.location": self.ssl_key_location, "ssl.key.password": self.ssl_key_password}
        for key, value in named.items():
            if value is not None:
                out[key] = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
        return {**out, **self.extra}


class RedisSettings(_Group):
    url: str = Field("redis://localhost:6379/0", description="Redis for triggers, dedup keys and profiles; "
                                                           "`rediss://` for TLS (credentials in it are masked)")
    username: Optional[str] = Field(None, description="Redis ACL user (AUTH username password)")
    password: Optional[SecretStr] = Field(None, description="Redis password (secret: masked in output and logs)")
    ssl_ca_certs: Optional[Path] = Field(None, description="rediss://: CA certificate(s) the server's certificate "
                                                           "is checked against (default: the system's)")
    ssl_certfile: Optional[Path] = Field(None, description="rediss://: client certificate (mutual TLS)")
    ssl_keyfile: Optional[Path] = Field(None, description="rediss://: client key (mutual TLS)")
    ssl_check_hostname: bool = Field(True, description="rediss://: the certificate must name the host in the URL")
    stream: str = Field("crm:triggers", description="trigger stream")
    stream_maxlen: int = Field(1_000_000, gt=0, description="approximate MAXLEN of the stream")
    customer_triggers: int = Field(50, gt=0, description="newest triggers kept per customer in crm:customer:{id}:triggers (the API's index)")
    dedup_ttl: Duration = Field(timedelta(days=30), description="TTL of the crm:trigger:{id} write-once keys")
    retry_give_up: Duration = Field(timedelta(minutes=10), description="stop retrying a write after this long")
    audit_stream: str = Field("crm:audit", description="stream of erasure_completed records")
    tombstones: str = Field("crm:tombstones", description="hash of erased customers: keyed hash -> erased_at ms")


    @model_validator(mode="after")
    def _tls_needs_rediss(self) -> "RedisSettings":
        scheme = urlsplit(self.url).scheme
        if scheme not in ("redis", "rediss", "unix"):
            raise ValueError(f"CRM_REDIS__URL must start with redis://, rediss:// (TLS) or unix://, not {scheme}://")
        tls = [n for n in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile") if getattr(self, n) is not None]
        if tls and scheme != "rediss":
            raise ValueError(f"CRM_REDIS__{tls[0].upper()} is set but CRM_REDIS__URL is not rediss:// (TLS)")
        return self

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``redis.Redis.from_url(self.url, ...)`` beyond the URL: credentials
        (secrets in clear: never log them) and, for ``rediss://``, the TLS files."""
        out: dict[str, Any] = {}
        if self.username is not None:
            out["username"] = self.username
        if self.password is not None:
            out["password"] = self.password.get_secret_value()
        if urlsplit(self.url).scheme == "rediss":
            out["ssl_check_hostname"] = self.ssl_check_hostname
            for name in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile"):
                if getattr(self, name) is not None:
                    out[name] = str(getattr(self, name))
        return out

    @property
    def safe_url(self) -> str:
        """The URL with any password in it masked (for logs and error lines)."""
        return mask_url(self.url)


class PrivacySettings(_Group):
    tombstone_key: SecretStr = Field(SecretStr("crm-stream-tombstones"), min_length=1,
                                     description="secret key of the tombstones' HMAC-SHA256 (set your own; "
                                                 "changing it forgets every erasure)")
    tombstone_file: Optional[Path] = Field(None, description="replay: tombstones loaded at start, new erasures "
                                                             "appended (none: only the log's own erasures)")


class ApiSettings(_Group):
    keys: list[str] = Field(default_factory=list, description="API keys (`Authorization: Bearer KEY`) of `crm-stream serve`, a JSON list; none: every /v1 and /agent request is 401")
    host: str = Field("127.0.0.1", description="address `crm-stream serve` listens on")
    port: int = Field(8080, ge=0, le=65535, description="port of `crm-stream serve`")
    cors_origins: list[str] = Field(default_factory=list, description="browser origins allowed to call the API (none: CORS off)")
    max_limit: int = Field(500, gt=0, description="largest `limit` a list route accepts")


# --------------------------------------------------------------------------- contact policy (issue 15)
# Consent, quiet hours and holdouts: what a customer asked for and how a team proves a flow helps.

CHANNELS = ("email", "sms", "push")


def _clock_time(value: str) -> str:
    h, _, m = value.partition(":")
    if not (h.isdigit() and m.isdigit() and len(m) == 2 and 0 <= int(h) <= 23 and 0 <= int(m) <= 59):
        raise ValueError("not a local time of day (write hh:mm, 00:00..23:59)")
    return f"{int(h):02d}:{m}"


def _zone_name(value: str) -> str:
    from zoneinfo import ZoneInfo

    try:
        ZoneInfo(value)
    except Exception:
        raise ValueError(f"not an IANA time zone: {value!r}") from None
    return value


def _shares(value: dict[str, float]) -> dict[str, float]:
    if any(not 0 <= v < 1 for v in value.values()):
        raise ValueError("a holdout share is a number 0 <= share < 1")
    return value


class ConsentSettings(_Group):
    default: str = Field("opt_in", pattern="^(opt_in|opt_out)$",
                         description="marketing to a customer with no consent event: `opt_in` (GDPR: none until "
                                     "granted) or `opt_out` (allowed until revoked)")


class QuietHoursSettings(_Group):
    enabled: bool = Field(True, description="hold marketing due at night in the customer's local time until the quiet hours end")
    start: Annotated[str, AfterValidator(_clock_time)] = Field("21:00", description="quiet hours begin (local time, hh:mm)")
    end: Annotated[str, AfterValidator(_clock_time)] = Field("08:00", description="quiet hours end (local time, hh:mm)")
    default_timezone: Annotated[str, AfterValidator(_zone_name)] = Field(
        "UTC", description="IANA zone of a customer whose events carry neither a `timezone` nor a UTC offset")


class HoldoutSettings(_Group):
    share: Annotated[dict[str, float], AfterValidator(_shares)] = Field(
        default_factory=lambda: {"abandoned_cart": 0.05, "proactive_outreach": 0.05,
                                 "delay_apology": 0.0, "escalation": 0.0},
        description="per trigger type: the share of customers held out (suppressed `holdout`) to measure uplift")
    attribution: dict[str, Duration] = Field(
        default_factory=lambda: {"abandoned_cart": timedelta(hours=24), "proactive_outreach": timedelta(days=7),
                                 "delay_apology": timedelta(days=7), "escalation": timedelta(days=7)},
        description="per trigger type: an order within this after the send (or the holdout) is a conversion")
    key: str = Field("crm-holdout-v1", min_length=1,
                     description="key of the hash that assigns customers to holdout groups (change it to re-draw them)")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CRM_", env_nested_delimiter="__", extra="forbid")
    toml_file: ClassVar[Optional[Path]] = None

    time: TimeSettings = TimeSettings()
    abandoned_cart: AbandonedCartSettings = AbandonedCartSettings()
    delay_apology: DelayApologySettings = DelayApologySettings()
    escalation: EscalationSettings = EscalationSettings()
    proactive: ProactiveSettings = ProactiveSettings()
    rules: RulesSettings = RulesSettings()
    watch: WatchSettings = WatchSettings()
    browse_abandonment: BrowseAbandonmentSettings = BrowseAbandonmentSettings()
    post_purchase_review: PostPurchaseReviewSettings = PostPurchaseReviewSettings()
    win_back: WinBackSettings = WinBackSettings()
    support_sla_breach: SupportSlaSettings = SupportSlaSettings()
    satisfaction_survey: SatisfactionSurveySettings = SatisfactionSurveySettings()
    policy: PolicySettings = PolicySettings()
    tiers: TierSettings = TierSettings()
    labels: LabelSettings = LabelSettings()
    models: ModelSettings = ModelSettings()
    recs: RecsSettings = RecsSettings()
    kafka: KafkaSettings = KafkaSettings()
    redis: RedisSettings = RedisSettings()
    privacy: PrivacySettings = PrivacySettings()
    api: ApiSettings = ApiSettings()
    consent: ConsentSettings = ConsentSettings()
    quiet_hours: QuietHoursSettings = QuietHoursSettings()
    holdout: HoldoutSettings = HoldoutSettings()
    metrics_port: int = Field(9464, ge=0, le=65535, description="Prometheus port of the first process (process i serves port + i)")
    recovery: bool = Field(True, description="`run`: snapshot state and input offsets every snapshot_interval "
                                             "into recovery_dir and resume from there; off, every restart re-reads "
                                             "the topics from starting_offset and sends old triggers again")
    recovery_dir: Path = Field(Path("crm-recovery"), description="Bytewax recovery directory (relative: to the "
                                                                 "working directory)")
    recovery_partitions: int = Field(64, ge=1, description="recovery partitions (SQLite files) a first start "
                                                           "creates, at least one per worker; fixed afterwards. A resume "
                                                           "re-reads a partition per 1,000 keys (Bytewax 0.21), so its "
                                                           "time grows with the square of the customers per partition; "
                                                           "each is committed at every snapshot, which stalls the worker "
                                                           "longer with more (1 suits under 100,000 customers per worker)")
    snapshot_interval: Duration = Field(timedelta(seconds=10), description="Bytewax epoch / snapshot interval")
    log_level: str = Field("INFO", pattern="^(DEBUG|INFO|WARNING|ERROR)$", description="log level")

    def read_topics(self) -> list[str]:
        """The input topics a run reads: every family's; the catalog's only when a rule reads it."""
        families = [f for f in self.kafka.topics if f != "catalog" or set(CATALOG_RULES) & set(self.rules.enabled)]
        return self.kafka.topics_of(families)

    @field_validator("kafka", "redis", mode="before")
    @classmethod
    def _none_to_default(cls, v: Any) -> Any:
        return {} if v is None else v

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if cls.toml_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=cls.toml_file))
        return tuple(sources)


class SettingsError(ValueError):
    """A bad setting in one line: ``bad setting WHERE: PROBLEM`` (:func:`bad_setting`), or ``bad
    settings file F: ...``. ``path``: the setting's attribute names (empty when no one setting is
    at fault); ``problem``: what is wrong and what a valid value looks like."""

    def __init__(self, message: str, path: tuple = (), problem: str = ""):
        super().__init__(message)
        self.path, self.problem = tuple(path), problem or message


def load_settings(config_file: Optional[Path] = None, **overrides: Any) -> Settings:
    """Build the settings; raise :class:`SettingsError` with one line naming the bad setting (its
    ``CRM_*`` variable, or its key in ``config_file``) and what a valid value looks like (also for
    a ``CRM_*`` variable that names no setting, and a settings file that is missing or not TOML)."""
    toml = _read_toml(config_file)
    check_environment()
    Settings.toml_file = Path(config_file) if config_file else None
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        path, problem = _explain_error(exc.errors()[0])
        raise bad_setting(path, problem, config_file, toml=toml) from None
    except Exception as exc:  # unparsable JSON in a CRM_* variable (pydantic-settings)
        raise _env_json_error(exc) from None
    finally:
        Settings.toml_file = None


def _read_toml(config_file: Optional[Path]) -> dict:
    import tomllib

    if config_file is None:
        return {}
    try:
        return tomllib.loads(Path(config_file).read_text())
    except FileNotFoundError:
        raise SettingsError(f"bad settings file {config_file}: not found") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise SettingsError(f"bad settings file {config_file}: {str(exc).splitlines()[0]}") from None


def bad_setting(path: tuple, problem: str, config_file: Optional[Path] = None, environ: Optional[dict] = None,
                toml: Optional[dict] = None, cls: type = None) -> SettingsError:
    """The one-line error for the setting at ``path``: named as the user set it (its ``CRM_*``
    variable, or its key in ``config_file``; both when neither holds it)."""
    env, key = "CRM_" + "__".join(p.upper() for p in path), ".".join(path)
    names = {k.upper() for k in (os.environ if environ is None else environ)}
    known = env in _ENV_PATHS or any(env.startswith(e + "__") for e in _ENV_PATHS)  # a map's entry too
    if _from_env(env, names):
        where = env
    elif config_file is not None and _has(_read_toml(config_file) if toml is None else toml, path):
        where = f"{key} in {config_file}" + (f" ({env})" if known else "")
    else:
        where = f"{env} ({key})"
    return (cls or SettingsError)(f"bad setting {where}: {problem}", path, problem)


def relocate(exc: SettingsError, config_file: Optional[Path]) -> SettingsError:
    """``exc`` naming its setting as it was set in ``config_file`` or the environment (an error
    raised where the file is unknown, e.g. while the rules are built)."""
    return bad_setting(exc.path, exc.problem, config_file, cls=type(exc)) if exc.path else exc


def _env_json_error(exc: Exception) -> SettingsError:
    found = re.search(r'field "(\w+)" from source "EnvSettingsSource"', str(exc))
    group = f"CRM_{found.group(1).upper()}" if found else "CRM_"
    names = sorted(n for n in os.environ if n.upper() == group or n.upper().startswith(group + "__"))
    if not names:
        return SettingsError(f"bad settings: {str(exc).splitlines()[0]}")
    return SettingsError(f"bad setting {names[0]}: not valid JSON (lists and maps are JSON in the environment, "
                         f"e.g. [\"a\", \"b\"] or {{\"key\": \"value\"}})")


_PATTERN_CHOICES = re.compile(r"^\^\(([\w|-]+)\)\$$")


def _explain_error(err: dict) -> tuple[tuple, str]:
    """A pydantic error -> (path of the setting at fault, the problem in the words of this project's
    settings: what a valid value looks like; never the input, which may be a secret)."""
    loc = [p for p in err["loc"] if isinstance(p, str)]
    index = next((p for p in err["loc"] if isinstance(p, int)), None)
    msg = err["msg"].removeprefix("Value error, ")
    named = re.match(r"^(CRM_[A-Z0-9_]*[A-Z0-9])(?::\s*|\s+)(.*)$", msg)
    if named and named.group(1) in _ENV_PATHS:  # a check across settings names the one it blames
        return _ENV_PATHS[named.group(1)], named.group(2)
    problem = _problem(err["type"], err.get("ctx") or {}, msg, tuple(loc))
    return tuple(loc), problem if index is None else f"entry {index + 1}: {problem}"


def _problem(kind: str, ctx: dict, msg: str, path: tuple = ()) -> str:
    words = {"int_parsing": "not a whole number", "int_type": "not a whole number",
             "int_from_float": "not a whole number", "float_parsing": "not a number", "float_type": "not a number",
             "bool_parsing": "not true or false (write true, false, 1 or 0)", "bool_type": "not true or false",
             "string_type": "not text", "missing": "is required",
             "list_type": "not a list (in the environment a JSON list, e.g. [\"a\", \"b\"])",
             "dict_type": "not a table (in the environment a JSON object, e.g. {\"key\": \"value\"})",
             "greater_than_equal": "must be at least {ge}", "greater_than": "must be more than {gt}",
             "less_than_equal": "must be at most {le}", "less_than": "must be less than {lt}",
             "too_short": "needs at least {min_length} entries", "string_too_short": "must not be empty"}
    if kind.startswith("time_delta"):
        return DURATION_HINT
    if kind == "extra_forbidden":
        return "names no setting" + _closest_key(path)
    if kind == "string_pattern_mismatch":
        choices = _PATTERN_CHOICES.match(str(ctx.get("pattern", "")))
        return f"must be one of {', '.join(choices.group(1).split('|'))}" if choices else \
            f"must match {ctx.get('pattern')}"
    if kind in words:
        return words[kind].format(**ctx)
    return msg.replace("Input should be", "should be")


def _closest_key(path: tuple) -> str:
    known = {".".join(p): p for _, p, _ in _leaves()}
    best = difflib.get_close_matches(".".join(path), list(known), n=1, cutoff=0.6)
    return f"; did you mean {best[0]} (CRM_{'__'.join(known[best[0]]).upper()})?" if best else ""


def catalogue_rules(s: Settings) -> dict[str, DeclaredRule]:
    """The catalogue's flows as declared rules, with the numbers of their settings groups (README,
    "Your own triggers", has the table). ``price_drop`` and ``back_in_stock`` join products' and
    customers' state and are hand-written rules, not declarations."""
    b, r, w, q, v = s.browse_abandonment, s.post_purchase_review, s.win_back, s.support_sla_breach, s.satisfaction_survey
    defs = [
        {"name": "browse_abandonment", "policy_class": "marketing", "key": "product_id",
         "open": "product_view", "count": b.views, "window": b.window, "due": {"idle": b.wait},
         "cancel": ["add_to_cart", {"type": "order_placed", "key": "items[].product_id"}],
         "payload": {"product_id": "$key", "views": "$count", "last_viewed_at": "$last", "price": "price"},
         "reason": "viewed_not_carted", "cooldown": b.cooldown, "priority": "low"},
        {"name": "post_purchase_review", "policy_class": "marketing", "key": "order_id",
         "open": "order_delivered", "due": {"idle": r.after}, "cancel": ["return_requested", "refund_issued"],
         "payload": {"order_id": "$key", "delivered_at": "$last"},
         "reason": "delivered", "cooldown": r.cooldown, "priority": "low"},
        {"name": "win_back", "policy_class": "marketing", "key": "customer",
         "open": "order_placed", "due": {"idle": w.after},
         "payload": {"last_order_id": "order_id", "last_order_at": "$last", "last_order_total": "total"},
         "reason": "no_order_since", "cooldown": w.cooldown, "priority": "low"},
        {"name": "support_sla_breach", "policy_class": "service", "key": "conversation_id",
         "open": {"type": "chat_message", "where": {"sender": "customer"}}, "due": {"delay": q.reply_within},
         "cancel": [{"type": "chat_message", "where": {"sender": "agent"}}, "chat_closed"], "rearm": "cancel",
         "payload": {"conversation_id": "$key", "waiting_since": "$opened", "messages_waiting": "$count"},
         "reason": "no_agent_reply", "priority": "high"},
        {"name": "satisfaction_survey", "policy_class": "marketing", "key": "conversation_id",
         "open": {"type": "chat_closed", "where": {"csat": {"exists": False}}}, "due": {"delay": v.after},
         "cancel": ["chat_message", {"type": "chat_closed", "where": {"csat": {"exists": True}}}],
         "payload": {"conversation_id": "$key", "closed_at": "$opened"},
         "reason": "closed_without_csat", "cooldown": v.cooldown, "priority": "low"},
    ]
    return {d["name"]: DeclaredRule.model_validate(d) for d in defs}


def rule_definitions(s: Settings) -> dict[str, DeclaredRule]:
    """Every declared rule by name: the catalogue's, replaced or joined by ``rules.declared``."""
    defs = catalogue_rules(s)
    defs.update((d.name, d) for d in s.rules.declared)
    return defs


# ---------------------------------------------------------------------------- names, secrets, display

TEST_PREFIX = "CRM_TEST_"  # the test suite's own variables (tests/infra.py), not settings
SECRET_KEY = re.compile(r"password|secret|token|credential|oauthbearer\.config|\.pem$", re.IGNORECASE)
MASK = "***"


def _leaves(model: type[BaseModel] = Settings, prefix: str = "CRM_", path: tuple = ()):
    """(environment name, path of attribute names, field) of every setting, groups flattened."""
    for name, f in model.model_fields.items():
        ann = f.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            yield from _leaves(ann, f"{prefix}{name.upper()}__", (*path, name))
        else:
            yield f"{prefix}{name.upper()}", (*path, name), f


_ENV_PATHS: dict[str, tuple] = {}  # CRM_* name -> attribute path, filled below


def check_environment(environ: Optional[dict] = None) -> None:
    """Raise :class:`SettingsError` for a ``CRM_*`` variable that names no setting, naming the
    closest one (``CRM_KAFKA_BOOTSTRAP_SERVERS`` -> ``CRM_KAFKA__BOOTSTRAP_SERVERS``): pydantic
    would ignore it, and the engine would run on the default."""
    environ = os.environ if environ is None else environ
    leaves, maps = set(), set()
    for env, _, f in _leaves():
        leaves.add(env)
        if isinstance(f.get_default(call_default_factory=True), dict):
            maps.add(env + "__")  # CRM_POLICY__COOLDOWN__ABANDONED_CART sets one entry
    groups = {f"CRM_{n.upper()}" for n, f in Settings.model_fields.items()
              if isinstance(f.annotation, type) and issubclass(f.annotation, BaseModel)}  # a group as JSON
    for name in sorted(environ):
        up = name.upper()
        if not up.startswith("CRM_") or up.startswith(TEST_PREFIX) or up in leaves or up in groups \
                or any(up.startswith(m) for m in maps):
            continue
        raise SettingsError(f"bad setting {name}: names no setting{_closest(up, sorted(leaves))} "
                            f"(`crm-stream settings` lists them all)")


def _closest(name: str, known: list[str]) -> str:
    squash = lambda n: n.replace("__", "_")  # noqa: E731 - one underscore for two is the usual slip
    same = [k for k in known if squash(k) == squash(name)]
    best = same or difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return f"; did you mean {best[0]}?" if best else ""


def mask_url(url: str) -> str:
    """``scheme://user:***@host...``: the URL with any password in it masked."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # unparsable: show nothing of what may be a secret
        return MASK
    if password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:{MASK}@{host}"))


def show(value: Any, key: str = "") -> str:
    """One setting's value as text, secrets masked (SecretStr, URL passwords, secret-named map keys)."""
    if isinstance(value, SecretStr):
        return MASK
    if isinstance(value, timedelta):
        return format_duration(value)  # as users write it, and read back the same
    if isinstance(value, dict):
        return ", ".join(f"{k}={MASK if SECRET_KEY.search(str(k)) else show(v)}" for k, v in value.items()) or "{}"
    if isinstance(value, list):
        return ", ".join(map(str, value))
    if isinstance(value, str) and "://" in value:
        return mask_url(value)
    if isinstance(value, str) and SECRET_KEY.search(key):
        return MASK
    return str(value)


_ENV_PATHS.update((env, path) for env, path, _ in _leaves())


def settings_table() -> list[tuple[str, str, str]]:
    """(environment variable, default, description) for every setting, nested groups flattened."""
    return [(env, show(f.get_default(call_default_factory=True), env), f.description or "")
            for env, _, f in _leaves()]


def effective_table(settings: Settings, config_file: Optional[Path] = None,
                    environ: Optional[dict] = None) -> list[tuple[str, str, str]]:
    """(environment variable, effective value with secrets masked, where it came from: ``default``,
    ``file`` or ``environment``) for every setting."""
    environ = os.environ if environ is None else environ
    env_names = {k.upper() for k in environ}
    toml = _read_toml(config_file)
    rows = []
    for env, path, _ in _leaves():
        value: Any = settings
        for name in path:
            value = getattr(value, name)
        source = "environment" if _from_env(env, env_names) else "file" if _has(toml, path) else "default"
        if isinstance(value, dict) and value:
            source = _map_source(value, _env_keys(env, path, environ), _file_keys(toml, path))
        rows.append((env, show(value, env), source))
    return rows


def _map_source(value: dict, env_keys: set, file_keys: set) -> str:
    """Where a map's entries came from, as one word: ``environment``, ``file``, ``default`` or a
    ``+`` of them (``environment+default``: some entries set, the others the defaults)."""
    found = ["environment" if k in env_keys else "file" if k in file_keys else "default" for k in value]
    return "+".join(s for s in ("environment", "file", "default") if s in found)


def _env_keys(env: str, path: tuple, environ: dict) -> set:
    """The keys of the map ``env`` (at ``path``) that the environment sets: one entry
    (``CRM_POLICY__COOLDOWN__ABANDONED_CART``), or the map or its group as JSON."""
    import json

    keys = set()
    for name, text in environ.items():
        up = name.upper()
        if up.startswith(env + "__"):
            keys.add(up[len(env) + 2:].lower())
        elif up == env or env.startswith(up + "__"):
            try:
                tree = json.loads(text)
            except ValueError:
                continue
            keys |= _file_keys(tree, path[len(up.removeprefix("CRM_").split("__")):])
    return keys


def _file_keys(tree: Any, path: tuple) -> set:
    for name in path:
        tree = tree.get(name) if isinstance(tree, dict) else None
    return set(tree) if isinstance(tree, dict) else set()


def _from_env(env: str, names: set[str]) -> bool:
    """Whether the setting ``env`` is set by one of the (upper-case) variable ``names``: itself, its
    group as JSON (``CRM_POLICY``) or one entry of its map (``CRM_POLICY__COOLDOWN__ABANDONED_CART``)."""
    return any(env == n or env.startswith(n + "__") or n.startswith(env + "__") for n in names)


def _has(tree: dict, path: tuple) -> bool:
    for name in path:
        if not isinstance(tree, dict) or name not in tree:
            return False
        tree = tree[name]
    return True
