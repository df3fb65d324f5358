"""The support agent's page: the profile and recent triggers turned into what an agent reads.

``agent_view`` returns the template's context (plain values, no Redis); ``sparkline`` draws a
small inline SVG of values in [0, 1].
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Optional

from markupsafe import Markup


def _ts(text: Any) -> Optional[datetime]:
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except (TypeError, ValueError):
        return None


def short_time(text: Any) -> str:
    """``2026-11-23T10:15:00.000Z`` -> ``2026-11-23 10:15`` (UTC, as every output time is)."""
    t = _ts(text)
    return t.strftime("%Y-%m-%d %H:%M") if t else (str(text) if text else "-")


def _hours(a: datetime, b: datetime) -> float:
    return round((a - b).total_seconds() / 3600, 1)


def sparkline(values: list[float], width: int = 120, height: int = 28) -> Markup:
    """An inline SVG polyline of ``values`` (each in [0, 1], oldest first); the last point is a dot."""
    pts = [min(1.0, max(0.0, float(v))) for v in values if v is not None]
    if not pts:
        return Markup("")
    step = width / max(1, len(pts) - 1)
    xy = [(round(i * step if len(pts) > 1 else width / 2, 1), round((1 - v) * (height - 4) + 2, 1))
          for i, v in enumerate(pts)]
    line = " ".join(f"{x},{y}" for x, y in xy)
    x, y = xy[-1]
    return Markup(f'<svg class="spark" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
                  f'role="img" aria-label="trend"><polyline fill="none" stroke="currentColor" stroke-width="1.5" '
                  f'points="{line}"/><circle cx="{x}" cy="{y}" r="2.5" fill="currentColor"/></svg>')


def _orders(profile: dict, now: Optional[datetime], triggers: list[dict]) -> list[dict]:
    apologies = {t["payload"].get("order_id"): t for t in triggers if t.get("type") == "delay_apology"}
    out = []
    for o in profile.get("open_orders") or []:
        promised = _ts(o.get("promised_delivery_ts"))
        late = promised is not None and now is not None and now > promised
        apology = apologies.get(o.get("order_id"))
        out.append({**o, "late": late, "late_hours": _hours(now, promised) if late else None,
                    "credit": (apology or {}).get("payload", {}).get("suggested_credit")})
    return out


def _conversations(profile: dict, triggers: list[dict]) -> list[dict]:
    """Open conversations first, then those an escalation named, with the messages it carried."""
    seen: dict[str, dict] = {c: {"conversation_id": c, "open": True, "messages": [], "frustration": []}
                             for c in profile.get("open_conversations") or []}
    for t in reversed(triggers):  # oldest first: the newest escalation's messages win
        if t.get("type") != "escalation":
            continue
        cid = t["payload"].get("conversation_id")
        conv = seen.setdefault(cid, {"conversation_id": cid, "open": False, "messages": [], "frustration": []})
        conv["messages"] = t["payload"].get("last_messages") or conv["messages"]
        if t["payload"].get("frustration") is not None:
            conv["frustration"].append(t["payload"]["frustration"])
    return list(seen.values())


def agent_view(profile: dict, triggers: list[dict], recs: list[dict]) -> dict:
    """The template context: who, what is going wrong, what the engine did, churn, what to offer."""
    now = _ts(profile.get("updated_at"))
    first, last = _ts(profile.get("first_seen")), _ts(profile.get("last_seen"))
    frustration_now = profile.get("frustration_probability")
    convs = _conversations(profile, triggers)
    trend = [f for c in convs for f in c["frustration"]] + ([frustration_now] if frustration_now is not None else [])
    churn_now = profile.get("churn_probability")
    churn_trend = [t["score"] for t in reversed(triggers)
                   if t.get("type") == "proactive_outreach" and t.get("score") is not None]
    churn_trend += [churn_now] if churn_now is not None else []
    credits = [t["payload"].get("suggested_credit") for t in triggers if t.get("type") == "delay_apology"]
    offers = [t["payload"].get("suggested_offer") for t in triggers if t.get("type") == "proactive_outreach"]
    return {
        "p": profile,
        "tenure_days": (last - first).days if first and last else None,
        "orders": _orders(profile, now, triggers),
        "conversations": convs,
        "frustration_now": frustration_now,
        "frustration_spark": sparkline(trend) if len(trend) > 1 else Markup(""),
        "churn_now": churn_now,
        "churn_spark": sparkline(churn_trend) if len(churn_trend) > 1 else Markup(""),
        "triggers": triggers,
        "suppressed": sorted((profile.get("last_suppressed") or {}).items()),
        "recs": recs,
        "credit": next((c for c in credits if c is not None), None),
        "offer": next((o for o in offers if o), None),
    }
