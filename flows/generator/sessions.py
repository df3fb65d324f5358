"""A customer's sessions: browsing, searching, comparing alternatives, filling, bundling and
abandoning carts, checking out; and problem sessions (help pages, exit searches) after trouble."""

from __future__ import annotations

import math

from flows.generator.texts import EXIT_QUERIES, FAILED_QUERIES, HELP_PAGES, PAGES
from flows.generator.timefmt import MIN, SEC


class Visit:
    """One session in progress: its id, clock ``t`` (ms), mode and what happened so far."""

    __slots__ = ("sid", "t", "t0", "mode", "nudged", "focus", "need_add_first", "n_actions", "adds",
                 "adds_wanted", "bundled", "last_p", "last_cart")

    def __init__(self, sid: str, t: int):
        self.sid, self.t, self.t0 = sid, t, t
        self.adds = 0
        self.bundled = False  # at most one accessory bundle per session
        self.last_p = -1
        self.last_cart = t


class SessionMixin:
    """Part of ``Customer``: ``session(t, problem)`` emits one session's clicks and returns its end."""

    def _step(self, lo: float = 4.0, median: float = 35.0, hi: float = 540.0) -> int:
        """Think time before the next click (ms): lognormal seconds within [lo, hi]."""
        r = self.r
        return int(min(hi, max(lo, r.lognormvariate(math.log(median), 0.8))) * SEC) + r.randrange(SEC)

    def session(self, t: int, problem: bool) -> int:
        sid = f"s{self.idx:06d}{self.n_sessions:04d}"
        self.n_sessions += 1
        self.wish = [w for w in self.wish if w[2] > t]
        self.now = t
        if problem:
            return self._problem_session(sid, t)
        v = self._open_visit(sid, t)
        for _i in range(v.n_actions):
            if not self._click(v):
                break
        if v.mode == "resume" and v.need_add_first:
            self._resume_tail(v)
        if self.cart and not v.need_add_first:
            self._settle_cart(v)
        for _ in range(self.r.choice((0, 0, 1, 2))):  # a few more views after the cart (or none)
            v.t += self._step()
            self._view(v, self.product(), keep=False)
        if len(self.viewed) > 20:
            del self.viewed[:-20]
        return v.t

    def _problem_session(self, sid: str, t: int) -> int:
        """After trouble: the orders page, help pages, sometimes a search for how to leave."""
        r, emit = self.r, self.emit
        emit(t, "page_view", {"session_id": sid, "page": r.choice(("/account/orders", "/", "/help"))})
        n_help = r.randint(3, 5) if r.random() < 0.65 else r.randint(1, 2)
        for i in range(n_help):
            t += self._step(10, 60, 420)
            emit(t, "help_view", {"session_id": sid, "page": r.choice(HELP_PAGES)})
            if i == 0 and r.random() < 0.25 + 0.15 * min(self.bad, 2.0):
                t += self._step()
                emit(t, "search", {"session_id": sid, "query": r.choice(EXIT_QUERIES), "results": r.randint(1, 6)})
        if r.random() < 0.4:
            t += self._step()
            emit(t, "page_view", {"session_id": sid, "page": "/account/orders"})
        return t

    def _open_visit(self, sid: str, t: int) -> Visit:
        """The session's mode (resume a left cart, shop, browse), focus and first page."""
        r, cat = self.r, self.cat
        v = Visit(sid, t)
        v.need_add_first = bool(self.cart)  # a previous episode was abandoned
        u = r.random()
        v.nudged, self.nudged = self.nudged, False
        if self.cart and (u < 0.45 or v.nudged):
            v.mode = "resume"
        elif u < self.shop * (0.5 if self.fade_end is not None else 1.0):
            v.mode = "shop"
        else:
            v.mode = "browse"
        v.focus = self.focus(t)
        first_page = "/cart" if v.mode == "resume" else r.choice(PAGES[:4] + (f"/c/{cat.cat_names[cat.cat[v.focus]]}",))
        self.emit(t, "page_view", {"session_id": sid, "page": first_page})
        v.n_actions = r.randint(2, 9) if v.mode == "browse" else r.randint(3, 12)
        v.adds_wanted = 0 if v.mode == "browse" else r.choice((1, 1, 1, 2, 2, 3))
        if v.mode == "browse" and r.random() < 0.15:
            v.adds_wanted = 1
        return v

    def _click(self, v: Visit) -> bool:
        """One action of the session and maybe a cart action after it; False when the session ends."""
        r = self.r
        nt = v.t + self._step()
        if nt - v.t0 > 90 * MIN:
            return False
        if self.cart and not v.need_add_first and nt - v.last_cart > 15 * MIN:
            return False  # keep a live cart's activities well within the idle time
        v.t = nt
        u = r.random()
        if u < 0.12:
            self._search(v)
        elif u < 0.18:
            self.emit(v.t, "page_view", {"session_id": v.sid, "page": r.choice(PAGES)})
        elif u < 0.18 + 0.25 * self.help:
            self.emit(v.t, "help_view", {"session_id": v.sid, "page": r.choice(HELP_PAGES)})
        else:
            self._browse(v)
        if v.adds < v.adds_wanted and v.last_p >= 0 and r.random() < 0.55:
            self._add(v)
        elif (not v.need_add_first) and self.cart and r.random() < 0.05:
            v.t += self._step(3, 20, 300)
            self._remove(v.t, v.sid)
            v.last_cart = v.t
        return True

    def _search(self, v: Visit) -> None:
        """A search: rarely for something the shop lacks, sometimes for how to leave, mostly for a
        product around the focus (then its page)."""
        r, cat = self.r, self.cat
        if r.random() < 0.06:
            q = r.choice(FAILED_QUERIES)
            self.emit(v.t, "search", {"session_id": v.sid, "query": q, "results": 0})
            if r.random() < 0.5:
                self.push(v.t + 1, "failed_search", q)
        elif r.random() < 0.01 + 0.1 * min(self.bad, 2.0):
            self.emit(v.t, "search", {"session_id": v.sid, "query": r.choice(EXIT_QUERIES), "results": r.randint(1, 5)})
        else:
            p = self.related(v.focus)
            noun = cat.nouns[cat.cat[p]]
            q = r.choice((noun, f"{cat.names[p].split(' ')[0]} {noun}", f"cheap {noun}", f"best {noun}",
                          cat.names[p].lower(), f"{noun} deals"))
            self.emit(v.t, "search", {"session_id": v.sid, "query": q, "results": r.randint(3, 60)})
            v.last_p = p
            v.t += self._step()
            self._view(v, p)

    def _browse(self, v: Visit) -> None:
        """A product page: an accessory of the last product, or one around the focus."""
        r, cat = self.r, self.cat
        if v.last_p >= 0 and cat.complements[v.last_p] and r.random() < 0.3:
            p = r.choice(cat.complements[v.last_p])
        else:
            p = self.related(v.focus)
        self._view(v, p)
        v.last_p = p
        if r.random() < 0.004:
            self.push(v.t + 1, "question", p)

    def _view(self, v: Visit, p: int, keep: bool = True) -> None:
        """A product page at the price of the moment; ``keep``: remembered as viewed."""
        cat = self.cat
        self.emit(v.t, "product_view", {"session_id": v.sid, "product_id": cat.ids[p], "price": self.market.price(p, v.t)})
        if keep:
            self.viewed.append(p)

    def _put(self, p: int, q: int, price: float) -> None:
        item = self.cart.get(p)
        if item:
            item[0] += q
        else:
            self.cart[p] = [q, price]

    def _add(self, v: Visit) -> None:
        """Add the last product (1, sometimes 2-3), and sometimes its own accessory with it."""
        r, cat, market = self.r, self.cat, self.market
        if not market.in_stock(v.last_p, v.t):
            return  # sold out: viewed, not carted
        v.t += self._step(3, 20, 300)
        q = 1 if r.random() < 0.88 else r.randint(2, 3)
        price = market.price(v.last_p, v.t)
        self._put(v.last_p, q, price)
        self.emit(v.t, "add_to_cart", {"session_id": v.sid, "product_id": cat.ids[v.last_p], "price": price, "quantity": q})
        v.adds += 1
        v.need_add_first = False
        v.last_cart = v.t
        comp = cat.complements[v.last_p]
        if comp and not v.bundled and r.random() < 0.45:
            v.bundled = True
            c = comp[r.randrange(len(comp))]
            v.t += self._step(5, 30, 240)
            self._view(v, c)
            v.t += self._step(3, 15, 240)
            v.last_p = c
            if market.in_stock(c, v.t):
                price = market.price(c, v.t)
                self._put(c, 1, price)
                self.emit(v.t, "add_to_cart", {"session_id": v.sid, "product_id": cat.ids[c], "price": price, "quantity": 1})
                v.last_cart = v.t

    def _resume_tail(self, v: Visit) -> None:
        """A resumed cart whose episode was abandoned: an add opens the new episode."""
        cat = self.cat
        p = self.related(v.focus)
        v.t += self._step()
        self.emit(v.t, "product_view", {"session_id": v.sid, "product_id": cat.ids[p], "price": self.market.price(p, v.t)})
        if not self.market.in_stock(p, v.t):
            return  # sold out: the old cart stays left
        v.t += self._step(3, 20, 300)
        price = self.market.price(p, v.t)
        self._put(p, 1, price)
        self.emit(v.t, "add_to_cart", {"session_id": v.sid, "product_id": cat.ids[p], "price": price, "quantity": 1})
        v.need_add_first = False

    def _settle_cart(self, v: Visit) -> None:
        """The cart at the end of the session: emptied, ordered, or left (abandoned)."""
        r = self.r
        if r.random() < 0.04:
            while self.cart:  # removes everything: the episode ends without abandonment
                v.t += self._step(3, 15, 120)
                self._remove(v.t, v.sid)
            return
        p_checkout = 1.0 - self.abandon
        if v.mode == "browse":
            p_checkout *= 0.4
        if v.mode == "resume":
            p_checkout = min(0.95, p_checkout + 0.3)
        if v.nudged:  # came back for the reminded cart
            p_checkout = 0.9
        if self.fade_end is not None:
            p_checkout *= 0.6
        if r.random() < p_checkout:
            v.t += self._step(5, 40, 400)
            self.emit(v.t, "checkout_started", {"session_id": v.sid})
            if r.random() >= 0.06:  # else payment trouble: leaves, the cart is abandoned
                v.t += self._step(15, 70, 500)
                self.place_order(v.t)

    def _remove(self, t: int, sid: str) -> None:
        keys = sorted(self.cart)
        p = keys[self.r.randrange(len(keys))]
        q = self.cart.pop(p)[0]
        self.emit(t, "remove_from_cart", {"session_id": sid, "product_id": self.cat.ids[p], "quantity": q})
