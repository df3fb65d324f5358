"""Support conversations: calm or frustrated customers (frustration grows with bad experiences and
temper), bot or agent replies (sometimes slow: the customer writes again; sometimes past the
support SLA, or never before a late close), requests for a human, and the outcome (closed with or without csat, escalated, or abandoned without ``chat_closed``)."""

from __future__ import annotations

from typing import Any, Optional

from flows.generator import texts as tx
from flows.generator.timefmt import DAY, MIN, SEC

LATE_REPLY = 0.06  # conversations with one agent reply past the 30-min SLA
LATE_CLOSE = 0.2  # closed conversations whose last customer message waited, closed after 35+ min


class ChatMixin:
    """Part of ``Customer``: ``chat(t, topic, data)`` emits one conversation (or none if it would
    not fit before the end or the customer's fade-out)."""

    def chat(self, t: int, topic: str, data: Any) -> None:
        r = self.r
        if self.fade_end is not None and t >= self.fade_end:
            return
        self._decay(t)
        if topic == "question":
            p_frus = 0.03 + 0.12 * self.irritability + 0.3 * self.frus
        else:
            p_frus = 0.04 + 0.3 * self.irritability + 0.75 * min(self.frus, 1.0)
        frustrated = r.random() < min(0.95, p_frus)
        conv = f"v{self.idx:06d}{self.n_convs:03d}"
        self.n_convs += 1
        fill = self._chat_fill(data)
        msgs, human_at = self._chat_messages(t, topic, fill, frustrated)
        closed = self._chat_outcome(frustrated, human_at)
        end_ts = msgs[-1][0] + int(r.uniform(1 * MIN, 15 * MIN))
        if closed is not None and msgs[-1][1] == "customer" and r.random() < LATE_CLOSE:
            end_ts = msgs[-1][0] + int(r.uniform(35 * MIN, 150 * MIN))  # closed with the question unanswered
        if end_ts >= self.end or (self.fade_end is not None and end_ts >= self.fade_end):
            return  # the conversation would not fit: it does not happen
        for ts, sender, text in msgs:
            self.emit(ts, "chat_message", {"conversation_id": conv, "sender": sender, "text": text})
        if closed is not None:
            self.emit(end_ts, "chat_closed", {"conversation_id": conv, **closed})
        self.convs.append((conv, frustrated))
        self._decay(end_ts)
        if frustrated:
            self.bad += 0.8
            self.frus = min(1.5, self.frus + 0.2)
        elif closed is not None and closed.get("csat", 3) >= 4:
            self.bad = max(0.0, self.bad - 0.2)
            self.frus *= 0.6

    def _chat_fill(self, data: Any) -> dict:
        """The placeholders of the texts: an order (``data`` the order info dict), a product
        (``data`` its index), a failed search (``data`` the query)."""
        r, cat = self.r, self.cat
        if isinstance(data, dict):
            oid, product = data["oid"], data["product"]
            day = tx.DAYNAMES[(data["promised"] // DAY + 3) % 7]
            carrier = data.get("carrier", "the carrier")
        else:
            oid = f"o{self.idx:06d}{max(0, self.n_orders - 1):04d}"
            product = cat.names[data] if isinstance(data, int) else cat.names[cat.pick(r)]
            day = r.choice(tx.DAYNAMES)
            carrier = "the carrier"
        thing = data if isinstance(data, str) else r.choice(tx.FAILED_QUERIES)
        comp = cat.complements[data] if isinstance(data, int) else []
        p2 = r.choice(comp) if comp else cat.pick(r)
        return {"oid": oid, "product": product, "product2": cat.names[p2], "day": day,
                "thing": thing, "nth": r.choice(("second", "third", "fourth")), "carrier": carrier,
                "aname": r.choice(tx.AGENT_NAMES), "pct": r.choice((5, 10, 15, 20)),
                "status": r.choice(tx.STATUSES)}

    def _chat_messages(self, t: int, key: str, fill: dict, frustrated: bool) -> tuple[list[tuple[int, str, str]], int]:
        """(ts, sender, text) messages: customer, reply, customer, ...; and the index of the
        customer message asking for a human (-1: none)."""
        r = self.r
        msgs: list[tuple[int, str, str]] = []
        n_cust = r.randint(3, 7) if frustrated else r.randint(1, 3)
        wants_human = r.random() < (0.4 if frustrated else 0.06)
        human_at = r.randrange(n_cust) if wants_human else -1
        reply_by = "bot" if r.random() < 0.5 else "agent"
        late_at = r.randrange(n_cust) if r.random() < LATE_REPLY else -1  # the care team is swamped
        for i in range(n_cust):
            text = self._first_text(key, fill, frustrated) if i == 0 else self._next_text(fill, frustrated)
            if i == human_at:
                h = r.choice(tx.ANGRY_HUMAN if frustrated else tx.CALM_HUMAN)
                if frustrated:
                    h = tx.shout(r, h) if r.random() < 0.5 else h
                text = h if r.random() < 0.5 else f"{text} {h}"
            msgs.append((t, "customer", text))
            if i == n_cust - 1 and r.random() < 0.5:
                break
            if i == late_at:
                t = self._late_reply_after(t, msgs, frustrated)
                sender = "agent"
            else:
                t = self._reply_after(t, msgs, frustrated)
                sender = "agent" if reply_by == "bot" and i >= 1 else reply_by
            msgs.append((t, sender, self._reply_text(i, n_cust, sender, key, fill).format(**fill)))
            t += int(r.uniform(20 * SEC, 5 * MIN))
        return msgs, human_at

    def _reply_after(self, t: int, msgs: list[tuple[int, str, str]], frustrated: bool) -> int:
        """The reply's time after a customer message at ``t``; sometimes slow, and the customer
        writes again meanwhile (3 in a row within 10 min)."""
        r = self.r
        if r.random() < (0.35 if frustrated else 0.1):
            t1 = t
            for _ in range(2 if (frustrated or r.random() < 0.3) else 0):
                t1 += int(r.uniform(1 * MIN, 4 * MIN))
                msgs.append((t1, "customer", self._wait_text(frustrated, (t1 - t) // MIN + 1)))
            return max(t + int(r.uniform(11 * MIN, 25 * MIN)), t1 + 30 * SEC)
        return t + int(r.uniform(15 * SEC, 4 * MIN))

    def _late_reply_after(self, t: int, msgs: list[tuple[int, str, str]], frustrated: bool) -> int:
        """An agent's reply 31-150 min after the customer's message at ``t`` (past the SLA), the
        customer sometimes asking once more meanwhile."""
        r = self.r
        late = t + int(r.uniform(31 * MIN, 150 * MIN))
        if r.random() < 0.5:
            t1 = t + int(r.uniform(12 * MIN, 28 * MIN))
            msgs.append((t1, "customer", self._wait_text(frustrated, (t1 - t) // MIN + 1)))
        return late

    def _reply_text(self, i: int, n_cust: int, sender: str, key: str, fill: dict) -> str:
        r = self.r
        pool = tx.REPLIES.get(key, tx.REPLIES["order"])
        if i == 0 and sender == "bot":
            return r.choice(tx.BOT_OPEN)
        if i == 0:
            return f"Hi, this is {fill['aname']} from the care team. " + r.choice(pool)
        if i == n_cust - 1 and r.random() < 0.5:
            return r.choice(tx.CLOSING)
        return r.choice(pool)

    def _first_text(self, key: str, fill: dict, frustrated: bool) -> str:
        r = self.r
        if frustrated:
            s = r.choice(tx.ANGRY_BODY[key]).format(**fill)
            if r.random() < 0.45:
                s = f"{r.choice(tx.ANGRY_PRE)}, {s}"
            s = tx.shout(r, s) + r.choice(tx.ANGRY_END)
            for _ in range(r.choice((0, 1, 1, 2))):
                s += " " + tx.shout(r, r.choice(tx.ANGRY_POST)) + r.choice(tx.ANGRY_END)
            return s
        s = r.choice(tx.CALM_BODY[key]).format(**fill)
        o = r.choice(tx.CALM_OPEN)
        s = f"{o} {s}" if o else s[0].upper() + s[1:]
        c = r.choice(tx.CALM_CLOSE)
        return f"{s} {c}" if c else s

    def _next_text(self, fill: dict, frustrated: bool) -> str:
        r = self.r
        if frustrated:
            s = r.choice(tx.ANGRY_FOLLOW).format(**fill)
            if r.random() < 0.4:
                s += ". " + r.choice(tx.ANGRY_POST)
            return tx.shout(r, s) + r.choice(tx.ANGRY_END)
        return r.choice(tx.CALM_FOLLOW).format(**fill)

    def _wait_text(self, frustrated: bool, waited_min: int) -> str:
        r = self.r
        if frustrated:
            return tx.shout(r, r.choice(tx.ANGRY_WAIT).format(n=waited_min)) + r.choice(tx.ANGRY_END[:3])
        return r.choice(tx.CALM_WAIT)

    def _chat_outcome(self, frustrated: bool, human_at: int) -> Optional[dict]:
        """``chat_closed`` fields (escalated, csat; sometimes no csat), or None: abandoned."""
        r = self.r
        if frustrated:
            if r.random() >= 0.22:  # else abandoned: no chat_closed at all
                esc = r.random() < (0.75 if human_at >= 0 else 0.5)
                csat = r.choices((1, 2, 3, 4, 5), (0.45, 0.25, 0.15, 0.1, 0.05))[0]
                return {"escalated": esc, "csat": csat}
            return None
        if r.random() >= 0.03:
            esc = r.random() < (0.3 if human_at >= 0 else 0.03)
            csat = r.choices((1, 2, 3, 4, 5), (0.02, 0.04, 0.14, 0.36, 0.44))[0]
            closed = {"escalated": esc, "csat": csat}
            if r.random() < 0.1 and not esc:
                del closed["csat"]
            return closed
        return None
