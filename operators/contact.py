"""Quiet hours and the customer step's side of the contact policy (CONTRACT.md section 5).

Pure (no Bytewax): :class:`QuietHours` says whether an event time is at night in a zone and when
that night ends; :class:`ZoneBook` keeps where a customer is; :class:`ContactTracker` runs inside
the customer step and tells policy, in event time, what only that step can see:

- ``consent`` notes: a ``consent_updated`` event (policy keeps the timeline);
- ``zone`` notes: a change of the customer's time zone (an IANA ``timezone`` field, else the UTC
  offset of their clickstream ``ts`` strings);
- ``clock`` notes: the customer's frontier has passed ``ts`` (a held trigger's release time, the end
  of an attribution window), with the latest clickstream time before it that fell in the quiet
  hours (did the customer come back overnight?).

Every note goes down the same path as the candidates (customer -> models -> policy), so policy
sees a customer's notes and candidates in the customer step's event-time order.
"""

from __future__ import annotations

from datetime import date, datetime, time as dtime, timedelta, timezone
from functools import lru_cache
from typing import Any, Optional
from zoneinfo import ZoneInfo

from operators.events import CLICKSTREAM_TYPES, Event
from operators.units import DAY, MINUTE

ZONE_CHANGES_KEPT = 8  # per kind of source: a customer who travels a lot keeps their latest zones
HOUR_MS = 3_600_000
OFFSETS_KEPT = 1 << 16  # (zone, hour) offsets QuietHours caches (then it starts over)
_UNKNOWN = object()


@lru_cache(maxsize=4096)
def zone_info(zone: str) -> Optional[Any]:
    """``"Europe/Berlin"`` -> ZoneInfo, ``"+01:00"`` -> a fixed offset; ``None`` when neither."""
    if zone[:1] in "+-" and len(zone) == 6 and zone[3] == ":":
        try:
            minutes = int(zone[1:3]) * 60 + int(zone[4:6])
        except ValueError:
            return None
        return timezone(timedelta(minutes=minutes if zone[0] == "+" else -minutes))
    if not zone or len(zone) > 64 or zone.startswith(("/", ".")) or ".." in zone:
        return None  # ZoneInfo would read a file named like it: only plausible names
    try:
        return ZoneInfo(zone)
    except Exception:  # unknown name, bad characters
        return None


def zone_hint(ev: Event) -> Optional[tuple[int, str]]:
    """Where an event says the customer is: (2, IANA name) from a valid ``timezone`` field, (1,
    ``+hh:mm``) from a clickstream ``ts`` string with a numeric offset (``Z`` says nothing: most
    systems write UTC whatever the customer's zone), else ``None``. A bad ``timezone`` is ignored."""
    tz = ev.data.get("timezone")
    if type(tz) is str and tz[:1] not in "+-" and zone_info(tz) is not None:
        return 2, tz
    if ev.type in CLICKSTREAM_TYPES:
        ts = ev.data.get("ts")
        if type(ts) is str and ts[-1] != "Z" and ts[-6] in "+-":
            return 1, ts[-6:]
    return None


class ZoneBook:
    """A customer's time zones over event time: per source kind the changes, ``(ts, zone)`` sorted."""

    __slots__ = ("changes",)

    def __init__(self) -> None:
        self.changes: dict[int, list] = {}

    def __getstate__(self):
        return self.changes

    def __setstate__(self, s):
        self.changes = s

    def add(self, ts: int, kind: int, zone: str) -> bool:
        """Record ``zone`` from ``ts`` on; ``False`` when it changes nothing."""
        entries = self.changes.setdefault(kind, [])
        i = len(entries)
        while i and entries[i - 1][0] > ts:
            i -= 1
        if i and entries[i - 1][1] == zone:
            return False
        entries.insert(i, (ts, zone))
        if len(entries) > ZONE_CHANGES_KEPT:
            del entries[0]
        return True

    def at(self, ts: int, default: str) -> str:
        """The IANA zone at ``ts``, else the clickstream offset at ``ts``, else ``default``; before a
        kind's first change, its first zone (where the customer is now is the best guess)."""
        if not self.changes:  # (most customers: no zone known)
            return default
        for kind in (2, 1):
            entries = self.changes.get(kind)
            if entries:
                best = entries[0][1]
                for t, zone in entries:
                    if t > ts:
                        break
                    best = zone
                return best
        return default


class QuietHours:
    """Local quiet hours, e.g. 21:00-08:00 (may wrap midnight; equal ends: no quiet hours)."""

    def __init__(self, start: str, end: str, default_zone: str, enabled: bool = True):
        self.start = _minutes(start)
        self.end = _minutes(end)
        self.default_zone = default_zone
        self.enabled = enabled and self.start != self.end
        self._offsets: dict[tuple[str, int], Optional[int]] = {}  # (zone, UTC hour) -> offset (_local_minute)

    def _quiet_minute(self, m: int) -> bool:
        if self.start < self.end:
            return self.start <= m < self.end
        return m >= self.start or m < self.end

    def is_quiet(self, ts: int, zone: str) -> bool:
        if not self.enabled:
            return False
        return self._quiet_minute(self._local_minute(ts, zone))

    def _local_minute(self, ts: int, zone: str) -> int:
        """The minute of the day at ``ts`` in ``zone`` (else the default zone): from the zone's UTC
        offset in ``ts``'s UTC hour, cached per zone and hour (a night check runs for every click),
        where that offset is whole minutes and holds all hour; else from the local time itself."""
        key = (zone, ts // HOUR_MS)
        offset = self._offsets.get(key, _UNKNOWN)
        if offset is _UNKNOWN:
            if len(self._offsets) >= OFFSETS_KEPT:
                self._offsets.clear()
            offset = self._offsets[key] = self._hour_offset(key[1] * HOUR_MS, zone)
        if offset is None:  # an offset change within the hour, or one in seconds
            local = datetime.fromtimestamp(ts / 1000, zone_info(zone) or zone_info(self.default_zone))
            return local.hour * 60 + local.minute
        return (ts // MINUTE + offset) % 1440

    def _hour_offset(self, start: int, zone: str) -> Optional[int]:
        """The UTC offset (minutes) of ``zone`` through the UTC hour from ``start`` (ms), or None."""
        tz = zone_info(zone) or zone_info(self.default_zone)
        first = datetime.fromtimestamp(start / 1000, tz).utcoffset()
        last = datetime.fromtimestamp((start + HOUR_MS - 1) / 1000, tz).utcoffset()
        if first != last or first % timedelta(minutes=1):
            return None
        return first // timedelta(minutes=1)

    def release(self, ts: int, zone: str) -> Optional[int]:
        """When quiet hours holding ``ts`` end (epoch ms), or ``None`` when ``ts`` is not in them."""
        if not self.enabled:
            return None
        if not self._quiet_minute(self._local_minute(ts, zone)):
            return None
        tz = zone_info(zone) or zone_info(self.default_zone)
        local = datetime.fromtimestamp(ts / 1000, tz)
        m = local.hour * 60 + local.minute
        day: date = local.date()
        if m >= self.end:  # the end is tomorrow's (a night that wraps midnight, before midnight)
            day += timedelta(days=1)
        end = datetime.combine(day, dtime(self.end // 60, self.end % 60), tz)
        return int(end.timestamp() * 1000)


def _minutes(hhmm: str) -> int:
    h, _, m = hhmm.partition(":")
    return int(h) * 60 + int(m)


class PolicyNote:
    """What the customer step tells policy (module docstring): ``kind`` is ``consent`` (``data`` =
    (channel, purpose, granted)), ``zone`` (``data`` = (kind, zone)) or ``clock`` (``data`` = the
    latest quiet-hours clickstream ts before ``ts``, or ``None``)."""

    __slots__ = ("kind", "customer_id", "ts", "data", "pos")

    def __init__(self, kind: str, customer_id: str, ts: int, data: Any = None):
        self.kind = kind
        self.customer_id = customer_id
        self.ts = ts
        self.data = data
        self.pos = 0

    def __repr__(self) -> str:
        return f"PolicyNote({self.kind}, {self.ts}, {self.data})"

    def __reduce__(self):
        return (PolicyNote, (self.kind, self.customer_id, self.ts, self.data), (None, {"pos": self.pos}))


class ContactConfig:
    """What the tracker and policy share: quiet hours, the attribution windows of tracked types."""

    def __init__(self, settings) -> None:
        q = settings.quiet_hours
        self.quiet = QuietHours(q.start, q.end, q.default_timezone, q.enabled)
        shares = settings.holdout.share
        attribution = settings.holdout.attribution
        # outcomes are tracked for the types with a holdout group (else there is nothing to compare)
        self.windows = {t: int(attribution[t].total_seconds() * 1000) if t in attribution else 7 * DAY
                        for t, share in shares.items() if share > 0}
        self.shares = dict(shares)
        self.key = settings.holdout.key.encode()
        self.opt_out = settings.consent.default == "opt_out"
        self.session_gap = int(settings.proactive.session_gap.total_seconds() * 1000)


class ContactTracker:
    """The customer step's part (picklable, one per customer; see the module docstring)."""

    __slots__ = ("zones", "nights", "deadlines")

    def __init__(self) -> None:
        self.zones = ZoneBook()
        self.nights: list[int] = []  # clickstream times in the quiet hours, not yet behind the frontier
        self.deadlines: list[int] = []  # sorted: when to send a clock note

    def __getstate__(self):
        return (self.zones, self.nights, self.deadlines)

    def __setstate__(self, s):
        self.zones, self.nights, self.deadlines = s

    def observe(self, ev: Event, cfg: ContactConfig, out: list) -> None:
        """An event the customer step took (not a duplicate) -> the notes policy needs: its consent
        change, a zone note when it moves the customer's zone; a night click is remembered."""
        if ev.type == "consent_updated":
            d = ev.data
            out.append(PolicyNote("consent", ev.customer_id, ev.ts, (d["channel"], d["purpose"], d["granted"])))
        hint = zone_hint(ev)
        if hint is not None and self.zones.add(ev.ts, hint[0], hint[1]):
            out.append(PolicyNote("zone", ev.customer_id, ev.ts, hint))
        if ev.type in CLICKSTREAM_TYPES and cfg.quiet.enabled and \
                cfg.quiet.is_quiet(ev.ts, self.zones.at(ev.ts, cfg.quiet.default_zone)):
            self.nights.append(ev.ts)

    @staticmethod
    def ignores(ev: Event, cfg: ContactConfig) -> bool:
        """True when a tracker holding nothing would take nothing from ``ev`` (:meth:`observe`):
        not a consent change, no zone hint, not a click in the quiet hours of the default zone.
        Most events: the customer step then needs no tracker for them at all."""
        t = ev.type
        if t == "consent_updated" or zone_hint(ev) is not None:
            return False
        quiet = cfg.quiet
        return not (t in CLICKSTREAM_TYPES and quiet.enabled and quiet.is_quiet(ev.ts, quiet.default_zone))

    def register(self, candidate: Any, cfg: ContactConfig) -> None:
        """A candidate the rules raised: its release time (quiet hours) and the end of its
        attribution window are clock notes policy will need."""
        t = candidate.event_ts
        release = None
        if candidate.policy_class == "marketing":  # by class: a shop's own marketing types too
            release = cfg.quiet.release(t, self.zones.at(t, cfg.quiet.default_zone))
            if release is not None:
                self._deadline(release)
        window = cfg.windows.get(candidate.type)
        if window is not None:
            self._deadline((release or t) + window)

    def _deadline(self, ts: int) -> None:
        d = self.deadlines
        if ts not in d:
            d.append(ts)
            d.sort()

    def next_deadline(self) -> Optional[int]:
        return self.deadlines[0] if self.deadlines else None

    def due(self, customer_id: str, frontier: int, inclusive: bool, out: list) -> None:
        """Clock notes for the deadlines the frontier has passed (at or before it: ``inclusive``)."""
        d = self.deadlines
        while d and (d[0] < frontier or (inclusive and d[0] == frontier)):
            ts = d.pop(0)
            last = None
            for n in self.nights:
                if n < ts and (last is None or n > last):
                    last = n
            out.append(PolicyNote("clock", customer_id, ts, last))
        if self.nights and self.nights[0] < frontier - DAY:  # a held candidate is at most a night old
            self.nights = [n for n in self.nights if n >= frontier - DAY]

