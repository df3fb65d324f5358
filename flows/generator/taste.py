"""What a customer looks at: products to their taste (favourite categories and brands, own price
tier), the current mission (what they shop for over several sessions), wanted complements."""

from __future__ import annotations

from flows.generator.timefmt import DAY

TASTE_TRIES = 8
TIER_MISS = 0.3


class TasteMixin:
    """Part of ``Customer``: product choice. Draws from ``self.r`` only."""

    def _pick_cat(self) -> int:
        cw = self.cat.cat_weight
        x = self.r.random() * sum(cw)
        for i, w in enumerate(cw):
            x -= w
            if x <= 0:
                return i
        return len(cw) - 1

    def pick_for(self, ci: int) -> int:
        """A product of category ``ci`` to this customer's taste: popularity times a taste factor
        (favourite brands, own price tier), drawn by rejection, so best-sellers stay best-sellers."""
        r, cat = self.r, self.cat
        b0, b1, tier, loyal = self.brands[0], self.brands[1], self.tier, self.loyal
        brand, ptier = cat.brand, cat.tier
        p = -1
        for _ in range(TASTE_TRIES):
            p = cat.pick_in(r, ci)
            b = brand[p]
            f = 1.0 if b == b0 else (0.6 if b == b1 else 1.0 - loyal)
            if ptier[p] != tier:
                f *= TIER_MISS
            if r.random() < f:
                return p
        return p

    def product(self) -> int:
        """A product to look at while browsing: a wanted one, or one to the customer's taste."""
        r, cat = self.r, self.cat
        u = r.random()
        if self.wish and u < 0.25:
            w = self.wish[r.randrange(len(self.wish))]
            if w[1] <= self.now:
                return w[0]
        if u < 0.65:
            return self.pick_for(self.prefs[0] if r.random() < 0.6 else self.prefs[1])
        a = cat.pick(r)
        return a if r.random() < 0.4 else self.pick_for(cat.cat[a])

    def focus(self, t: int) -> int:
        """What this session is about: a wanted complement or refill, else the current mission
        (kept over sessions until bought or given up), else a new one."""
        r = self.r
        if self.mission is not None and self.mission[1] < t:
            self.mission = None
        due = [w for w in self.wish if w[1] <= t]
        if due and r.random() < 0.6:
            return due[r.randrange(len(due))][0]
        if self.mission is None:
            u = r.random()
            if u < 0.7:
                a = self.pick_for(self.prefs[0] if r.random() < 0.6 else self.prefs[1])
            else:
                a = self.cat.pick(r)
                if r.random() < 0.6:
                    a = self.pick_for(self.cat.cat[a])
            self.mission = [a, t + int(r.uniform(3.0, 20.0) * DAY)]
        return self.mission[0]

    def related(self, focus: int) -> int:
        """A product viewed around the focus: itself, an alternative, or one to the taste."""
        r, cat = self.r, self.cat
        v = r.random()
        if v < 0.35:
            return focus
        if v < 0.75:
            sim = cat.similar[focus]
            return sim[r.randrange(len(sim))] if sim else focus
        return self.product()
