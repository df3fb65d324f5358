"""The shop's catalogue: ~2,000 products in 30 categories, brands, price tiers, Zipf popularity,
item-specific complements and alternatives. Seeded; no other randomness."""

from __future__ import annotations

import bisect
import math
import random
from typing import Optional

# name, noun, median price, complement categories
_CATEGORIES: tuple[tuple[str, str, float, tuple[str, ...]], ...] = (
    ("smartphones", "phone", 420.0, ("phone_cases", "chargers", "headphones", "screen_protectors")),
    ("phone_cases", "phone case", 18.0, ("screen_protectors",)),
    ("chargers", "charger", 25.0, ("cables",)),
    ("cables", "USB cable", 9.0, ()),
    ("screen_protectors", "screen protector", 12.0, ()),
    ("headphones", "headphones", 85.0, ("cables",)),
    ("laptops", "laptop", 900.0, ("laptop_bags", "mice", "keyboards", "monitors")),
    ("laptop_bags", "laptop bag", 45.0, ()),
    ("mice", "mouse", 28.0, ()),
    ("keyboards", "keyboard", 55.0, ("mice",)),
    ("monitors", "monitor", 240.0, ("cables",)),
    ("cameras", "camera", 650.0, ("memory_cards", "tripods", "camera_bags")),
    ("memory_cards", "memory card", 20.0, ()),
    ("tripods", "tripod", 40.0, ()),
    ("camera_bags", "camera bag", 50.0, ()),
    ("coffee_machines", "coffee machine", 180.0, ("coffee_beans", "mugs", "descaler")),
    ("coffee_beans", "coffee beans", 14.0, ("mugs",)),
    ("mugs", "mug", 12.0, ()),
    ("descaler", "descaler", 9.0, ()),
    ("running_shoes", "running shoes", 110.0, ("running_socks", "sports_watches")),
    ("running_socks", "running socks", 12.0, ()),
    ("sports_watches", "sports watch", 220.0, ("watch_straps", "chargers")),
    ("watch_straps", "watch strap", 20.0, ()),
    ("yoga_mats", "yoga mat", 35.0, ("yoga_blocks",)),
    ("yoga_blocks", "yoga block", 15.0, ()),
    ("printers", "printer", 160.0, ("ink_cartridges",)),
    ("ink_cartridges", "ink cartridge", 30.0, ()),
    ("game_consoles", "game console", 380.0, ("controllers", "video_games")),
    ("controllers", "controller", 55.0, ("video_games",)),
    ("video_games", "video game", 50.0, ()),
)
_BRANDS = ("Zentra", "Norvik", "Aurel", "Kobalt", "Lumio", "Vexa", "Orbis", "Tandem", "Pixora",
           "Brio", "Solace", "Helix", "Quanta", "Riva", "Tekno", "Nimbus", "Corvo", "Altis")
ZIPF = 1.35
_SUFFIXES = ("Pro", "Max", "Lite", "Plus", "Air", "Mini", "S", "X", "Neo", "One", "Go", "Ultra")
# consumables bought again and again: category -> (min, max) days until the same product runs out
_REPLENISH = {"coffee_beans": (12, 35), "ink_cartridges": (20, 45), "descaler": (25, 50),
              "running_socks": (30, 60)}


class Catalogue:
    """~2,000 products in 30 categories with brands, price tiers, Zipf-like popularity, lognormal
    prices and item-specific relations.

    * ``brand[p]``: each category is served by a handful of brands (shared across categories, so
      brand ecosystems exist); ``tier[p]``: 0 budget, 1 mid-range, 2 premium (price tertile inside
      the category).
    * ``complements[p]``: a few *specific* products per complement category (a given phone's own
      cases and chargers), preferably of the same brand and tier, drawn uniformly among those
      candidates, not by popularity: accessories of a long-tail phone are long-tail themselves.
    * ``similar[p]``: the alternatives a shopper compares ``p`` with: same category, same brand
      first, then other brands of the same tier, nearest in price.
    """

    def __init__(self, rng: random.Random, n_products: int = 2000):
        ncat = len(_CATEGORIES)
        raw = [rng.uniform(0.4, 2.0) for _ in range(ncat)]
        counts = [max(20, int(n_products * w / sum(raw))) for w in raw]
        counts[0] += n_products - sum(counts)  # exact total (smartphones absorb the rest)
        self.cat_names = [c[0] for c in _CATEGORIES]
        self.cat_index = {name: i for i, name in enumerate(self.cat_names)}
        self.brand_names = _BRANDS
        brand_strength = [1.0 / (i + 1) ** 0.6 for i in range(len(_BRANDS))]
        rng.shuffle(brand_strength)
        self.ids: list[str] = []
        self.names: list[str] = []
        self.price: list[float] = []
        self.cat: list[int] = []
        self.brand: list[int] = []
        self.by_cat: list[list[int]] = [[] for _ in range(ncat)]
        self._assign_brands(rng, counts, brand_strength)
        for ci in range(ncat):
            self._make_products(rng, ci, counts[ci], brand_strength)
        self._rank(rng)
        self._make_groups()
        self._make_similar()
        self._make_complements(rng)
        n = len(self.ids)
        self.nouns = [c[1] for c in _CATEGORIES]
        self.replenish: list[Optional[tuple[int, int]]] = [_REPLENISH.get(self.cat_names[self.cat[p]]) for p in range(n)]
        self.brand_weight = [0.0] * len(_BRANDS)
        for p in range(n):
            self.brand_weight[self.brand[p]] += self.weight[p]
        self.cum_brand = cumulate(self.brand_weight)

    def _assign_brands(self, rng: random.Random, counts: list[int], brand_strength: list[float]) -> None:
        """``cat_brands[ci]``: the brands of each category; a product's makers mostly make its
        accessories too (ecosystems)."""
        nb = len(_BRANDS)
        self.cat_brands: list[list[int]] = []
        for ci in range(len(_CATEGORIES)):
            k = min(nb, max(3, counts[ci] // 9))
            self.cat_brands.append(sorted(weighted_sample(rng, list(range(nb)), brand_strength, k)))
        for ci, (_name, _noun, _median, comp) in enumerate(_CATEGORIES):
            for cname in comp:
                cj = self.cat_index[cname]
                extra = [b for b in self.cat_brands[ci] if b not in self.cat_brands[cj] and rng.random() < 0.6]
                self.cat_brands[cj] = sorted(self.cat_brands[cj] + extra[:max(0, 12 - len(self.cat_brands[cj]))])

    def _make_products(self, rng: random.Random, ci: int, count: int, brand_strength: list[float]) -> None:
        _name, noun, median, _comp = _CATEGORIES[ci]
        brands = self.cat_brands[ci]
        bcum = cumulate([brand_strength[b] for b in brands])
        for _ in range(count):
            pi = len(self.ids)
            b = brands[min(len(brands) - 1, bisect.bisect_right(bcum, rng.random() * bcum[-1]))]
            self.ids.append(f"p{pi:05d}")
            self.names.append(f"{_BRANDS[b]} {noun} {rng.choice(_SUFFIXES)} {rng.randint(1, 9)}")
            p = median * rng.lognormvariate(0.0, 0.45)
            p = round(p) - 0.01 if p > 5 else round(p, 2)
            self.price.append(max(0.99, p))
            self.cat.append(ci)
            self.brand.append(b)
            self.by_cat[ci].append(pi)

    def _rank(self, rng: random.Random) -> None:
        """Price tiers inside each category and Zipf popularity over a random ranking."""
        n = len(self.ids)
        self.tier = [0] * n
        for members in self.by_cat:
            ranked = sorted(members, key=lambda q: (self.price[q], q))
            for j, q in enumerate(ranked):
                self.tier[q] = min(2, 3 * j // len(ranked))
        ranks = list(range(n))
        rng.shuffle(ranks)
        self.weight = [1.0 / (r + 1) ** ZIPF for r in ranks]
        self.cum_all = cumulate(self.weight)
        self.cum_cat = [cumulate([self.weight[p] for p in members]) for members in self.by_cat]
        self.cat_weight = [sum(self.weight[p] for p in members) for members in self.by_cat]

    def _make_groups(self) -> None:
        """Groups inside a category, by brand ("b") and by tier ("t"), for popularity-weighted draws."""
        self.groups: dict[tuple[int, str, int], tuple[list[int], list[float]]] = {}
        for ci, members in enumerate(self.by_cat):
            for b in self.cat_brands[ci]:
                sel = [p for p in members if self.brand[p] == b]
                if sel:
                    self.groups[(ci, "b", b)] = (sel, cumulate([self.weight[p] for p in sel]))
            for t in range(3):
                sel = [p for p in members if self.tier[p] == t]
                self.groups[(ci, "t", t)] = (sel, cumulate([self.weight[p] for p in sel]))

    def _make_similar(self) -> None:
        """Alternatives: same brand nearest in price, then same tier of other brands."""
        logp = [math.log(x) for x in self.price]
        self.similar: list[list[int]] = []
        for pi in range(len(self.ids)):
            members = self.by_cat[self.cat[pi]]
            same = sorted((abs(logp[q] - logp[pi]), q) for q in members if q != pi and self.brand[q] == self.brand[pi])
            other = sorted((abs(logp[q] - logp[pi]), q) for q in members
                           if self.brand[q] != self.brand[pi] and self.tier[q] == self.tier[pi])
            self.similar.append([q for _d, q in same[:4]] + [q for _d, q in other[:2]])

    def _make_complements(self, rng: random.Random) -> None:
        self.complements: list[list[int]] = []
        for pi in range(len(self.ids)):
            comp: list[int] = []
            for cname in _CATEGORIES[self.cat[pi]][3]:
                comp.extend(self._complements_in(rng, pi, self.cat_index[cname]))
            self.complements.append(sorted(set(comp)))

    def _complements_in(self, rng: random.Random, pi: int, cj: int) -> list[int]:
        """A few products of category ``cj`` that go with ``pi``: same brand and tier first."""
        pool = self.by_cat[cj]
        cand = [q for q in pool if self.brand[q] == self.brand[pi] and self.tier[q] == self.tier[pi]]
        if len(cand) < 2:
            cand = [q for q in pool if self.brand[q] == self.brand[pi]] or cand
        if len(cand) < 2:
            cand = [q for q in pool if self.tier[q] == self.tier[pi]]
        want = rng.choice((1, 2, 2, 3))
        got = rng.sample(cand, min(want, len(cand)))
        if rng.random() < 0.25:  # a third-party accessory from anywhere in the category
            got.append(pool[rng.randrange(len(pool))])
        return got

    def pick(self, rng: random.Random) -> int:
        return bisect.bisect_right(self.cum_all, rng.random() * self.cum_all[-1])

    def pick_in(self, rng: random.Random, ci: int) -> int:
        cum = self.cum_cat[ci]
        return self.by_cat[ci][bisect.bisect_right(cum, rng.random() * cum[-1])]

    def pick_group(self, rng: random.Random, ci: int, kind: str, value: int) -> int:
        """A popularity-weighted product of category ``ci`` with brand (``kind`` "b") or tier
        ("t") ``value``; -1 when the category has none."""
        g = self.groups.get((ci, kind, value))
        if g is None or not g[0]:
            return -1
        members, cum = g
        return members[min(len(members) - 1, bisect.bisect_right(cum, rng.random() * cum[-1]))]

    def pick_brand(self, rng: random.Random) -> int:
        return min(len(self.brand_weight) - 1, bisect.bisect_right(self.cum_brand, rng.random() * self.cum_brand[-1]))


def weighted_sample(rng: random.Random, items: list[int], weights: list[float], k: int) -> list[int]:
    """``k`` distinct items, each draw proportional to the remaining weights."""
    items, ws, out = list(items), [weights[i] for i in items], []
    for _ in range(min(k, len(items))):
        x = rng.random() * sum(ws)
        j = 0
        while j < len(ws) - 1 and x > ws[j]:
            x -= ws[j]
            j += 1
        out.append(items.pop(j))
        ws.pop(j)
    return out


def catalogue(seed: int) -> Catalogue:
    """The catalogue ``generate`` uses for this seed (products, prices, complements)."""
    return Catalogue(random.Random(seed * 31 + 7))


def cumulate(ws: list[float]) -> list[float]:
    """Running sums of ``ws`` for bisect draws; the last one nudged up so a draw never falls off."""
    out, s = [], 0.0
    for w in ws:
        s += w
        out.append(s)
    # guard against bisect returning len() on rng.random()*total rounding
    out[-1] = s * (1 + 1e-12) if s > 0 else 1.0
    return out
