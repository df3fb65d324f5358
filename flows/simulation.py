"""The event-stream generator behind ``crm-stream generate``.

A seeded, pure-Python simulation of an e-commerce shop: a catalogue with categories, brands
(with accessory ecosystems), price tiers, Zipf popularity, per-category prices, item-specific
complements (a phone's own cases and chargers, not its category's best-sellers) and
alternatives; customers with their own habits (visit rate, price level, cart abandonment, help
seeking, preferred categories, favourite brands, temper) who join over time, shop for something
over several sessions (comparing its alternatives), browse, fill and abandon carts, bundle an
item with its accessory, come back for complements and for consumables running out, order, get
parcels (late, lost, cancelled, returned), chat with support, and churn with a hazard that rises
with bad experiences. Most customers send consent events (``crm.profile``; some with their time
zone, some revoke later); a customer the engine would remind of an abandoned cart (consent, not in
the holdout group, the quiet hours over, no cooldown) sometimes comes back for it soon after, so a
replay measures an uplift over the holdout group. Taste multiplies popularity (draws by rejection), so sales stay Zipf-skewed
while a customer's next items resemble their previous ones.

Output (see CONTRACT.md section 8):

* ``events.jsonl``: one event per line, sorted by ``ts`` (stable), plus a ``bad_share`` of
  extra deliberately bad lines (malformed JSON, garbage bytes, missing fields, wrong types,
  exact duplicates re-sent later, late out-of-order ``page_view`` events). Bad lines never
  replace real events, so the truth stays exact.
* ``truth.jsonl``: the hidden truth, one object a line with a ``kind``: ``customer``,
  ``cart``, ``order``, ``conversation``. Cart, order and ``human_requested`` truths are
  recomputed from the events actually emitted, with the contract's definitions.

Determinism: only ``random.Random`` instances seeded from ``seed``; no wall clock, no hash()
or set ordering. The same arguments give byte-identical files.
"""

from __future__ import annotations

import bisect
import gc
import heapq
import math
import random
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Optional

import orjson

from config.settings import HoldoutSettings, QuietHoursSettings
from operators.contact import QuietHours
from operators.outcomes import in_holdout

__all__ = ["generate", "catalogue", "compute_cart_truth", "compute_order_truth", "HUMAN_RE", "iso"]

SEC = 1000
MIN = 60 * SEC
HOUR = 60 * MIN
DAY = 24 * HOUR
IDLE = 30 * MIN  # abandoned-cart idle time of the contract
GRACE = 2 * HOUR  # delay-apology grace of the contract
SESSION_MIN_GAP = 40 * MIN  # sessions of one customer are at least this far apart
# Reminders: the engine's default holdout group and quiet hours (the generator knows who gets one)
_HOLDOUT = HoldoutSettings()
_HOLDOUT_SHARE = _HOLDOUT.share.get("abandoned_cart", 0.0)
_HOLDOUT_KEY = _HOLDOUT.key.encode()
_QUIET = QuietHoursSettings()
QUIET = QuietHours(_QUIET.start, _QUIET.end, _QUIET.default_timezone, _QUIET.enabled)
REMIND_RESPONSE = 0.3  # a reminded customer comes back for the cart within hours this often
REMIND_COOLDOWN = DAY  # the engine's abandoned_cart cooldown
_ZONES = ("Europe/London", "Europe/Berlin", "Europe/Lisbon", "Europe/Madrid")

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_DAY_STR: dict[int, str] = {}
_MIN_STR: dict[int, str] = {}

CART_ACTIVITY = ("add_to_cart", "remove_from_cart", "checkout_started")

# Word-boundary scan for "asks for a human" (the engine's list, CONTRACT.md section 3, escalation (a)).
HUMAN_WORDS = (
    "human", "agent", "representative", "real person", "supervisor", "manager",
    "someone real", "live person", "talk to a person", "speak to a person",
)
HUMAN_RE = re.compile(r"\b(?:" + "|".join(re.escape(w) for w in HUMAN_WORDS) + r")\b", re.IGNORECASE)
# Substrings that must never appear in a customer message unless it is a human request.
_NEAR_MISS = ("human", "agent", "represent", "real person", "supervis", "manag", "someone real",
              "live person", "a person")


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
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        raise ValueError(f"timestamp without UTC offset: {text}")
    return (dt - _EPOCH) // timedelta(milliseconds=1)


# --------------------------------------------------------------------------------------------
# Catalogue
# --------------------------------------------------------------------------------------------

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
TASTE_TRIES = 8
TIER_MISS = 0.3
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
        nb = len(_BRANDS)
        raw = [rng.uniform(0.4, 2.0) for _ in range(ncat)]
        counts = [max(20, int(n_products * w / sum(raw))) for w in raw]
        counts[0] += n_products - sum(counts)  # exact total (smartphones absorb the rest)
        self.cat_names = [c[0] for c in _CATEGORIES]
        self.cat_index = {name: i for i, name in enumerate(self.cat_names)}
        self.brand_names = _BRANDS
        brand_strength = [1.0 / (i + 1) ** 0.6 for i in range(nb)]
        rng.shuffle(brand_strength)
        self.ids: list[str] = []
        self.names: list[str] = []
        self.price: list[float] = []
        self.cat: list[int] = []
        self.brand: list[int] = []
        self.by_cat: list[list[int]] = [[] for _ in range(ncat)]
        self.cat_brands: list[list[int]] = []
        for ci in range(ncat):
            k = min(nb, max(3, counts[ci] // 9))
            self.cat_brands.append(sorted(_weighted_sample(rng, list(range(nb)), brand_strength, k)))
        # ecosystems: the makers of a product mostly make its accessories too
        for ci, (_name, _noun, _median, comp) in enumerate(_CATEGORIES):
            for cname in comp:
                cj = self.cat_index[cname]
                extra = [b for b in self.cat_brands[ci] if b not in self.cat_brands[cj] and rng.random() < 0.6]
                self.cat_brands[cj] = sorted(self.cat_brands[cj] + extra[:max(0, 12 - len(self.cat_brands[cj]))])
        for ci, (_name, noun, median, _comp) in enumerate(_CATEGORIES):
            brands = self.cat_brands[ci]
            bcum = _cumulate([brand_strength[b] for b in brands])
            for _ in range(counts[ci]):
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
        n = len(self.ids)
        self.tier = [0] * n
        for members in self.by_cat:
            ranked = sorted(members, key=lambda q: (self.price[q], q))
            for j, q in enumerate(ranked):
                self.tier[q] = min(2, 3 * j // len(ranked))
        ranks = list(range(n))
        rng.shuffle(ranks)
        self.weight = [1.0 / (r + 1) ** ZIPF for r in ranks]
        self.cum_all = _cumulate(self.weight)
        self.cum_cat = [_cumulate([self.weight[p] for p in members]) for members in self.by_cat]
        self.cat_weight = [sum(self.weight[p] for p in members) for members in self.by_cat]
        # groups inside a category: by brand and by tier, with popularity-weighted draws
        self.groups: dict[tuple[int, str, int], tuple[list[int], list[float]]] = {}
        for ci, members in enumerate(self.by_cat):
            for key, sel in ((("b", b), [p for p in members if self.brand[p] == b]) for b in self.cat_brands[ci]):
                if sel:
                    self.groups[(ci, key[0], key[1])] = (sel, _cumulate([self.weight[p] for p in sel]))
            for t in range(3):
                sel = [p for p in members if self.tier[p] == t]
                self.groups[(ci, "t", t)] = (sel, _cumulate([self.weight[p] for p in sel]))
        # alternatives: same brand nearest in price, then same tier of other brands
        logp = [math.log(x) for x in self.price]
        self.similar: list[list[int]] = []
        for pi in range(n):
            members = self.by_cat[self.cat[pi]]
            same = sorted((abs(logp[q] - logp[pi]), q) for q in members if q != pi and self.brand[q] == self.brand[pi])
            other = sorted((abs(logp[q] - logp[pi]), q) for q in members
                           if self.brand[q] != self.brand[pi] and self.tier[q] == self.tier[pi])
            self.similar.append([q for _d, q in same[:4]] + [q for _d, q in other[:2]])
        # specific complements
        self.complements: list[list[int]] = []
        for pi in range(n):
            comp: list[int] = []
            for cname in _CATEGORIES[self.cat[pi]][3]:
                cj = self.cat_index[cname]
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
                comp.extend(got)
            self.complements.append(sorted(set(comp)))
        self.nouns = [c[1] for c in _CATEGORIES]
        self.replenish: list[Optional[tuple[int, int]]] = [_REPLENISH.get(self.cat_names[self.cat[p]]) for p in range(n)]
        self.brand_weight = [0.0] * nb
        for p in range(n):
            self.brand_weight[self.brand[p]] += self.weight[p]
        self.cum_brand = _cumulate(self.brand_weight)

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


def _weighted_sample(rng: random.Random, items: list[int], weights: list[float], k: int) -> list[int]:
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


def _cumulate(ws: list[float]) -> list[float]:
    out, s = [], 0.0
    for w in ws:
        s += w
        out.append(s)
    # guard against bisect returning len() on rng.random()*total rounding
    out[-1] = s * (1 + 1e-12) if s > 0 else 1.0
    return out


# --------------------------------------------------------------------------------------------
# Text
# --------------------------------------------------------------------------------------------

_CARRIERS = (  # name, share, late rate, lost rate
    ("SwiftPost", 0.35, 0.05, 0.004),
    ("ParcelOne", 0.30, 0.09, 0.008),
    ("Rapido", 0.20, 0.16, 0.012),
    ("EcoFreight", 0.15, 0.26, 0.02),
)
_CARRIER_CUM = _cumulate([c[1] for c in _CARRIERS])
_DELAY_REASONS = ("weather", "carrier_capacity", "address_issue", "customs", "sorting_center_backlog",
                  "vehicle_breakdown", "high_volume")
_CANCEL_REASONS = ("customer_request", "out_of_stock", "payment_failed", "duplicate_order")
_RETURN_REASONS = ("wrong_size", "damaged", "not_as_described", "changed_mind", "defective", "late_delivery")
_HELP_PAGES = ("/help/delivery", "/help/returns", "/help/payment", "/help/account", "/help/contact",
               "/help/tracking", "/help/warranty", "/help/faq")
_PAGES = ("/", "/deals", "/new", "/bestsellers", "/account", "/account/orders", "/wishlist", "/stores")
_EXIT_QUERIES = ("how to cancel my order", "refund policy", "close account", "delete my account",
                 "cancel order", "how do i get a refund", "return policy", "unsubscribe newsletter",
                 "close my account", "cancel subscription", "refund status", "how to return an item")
_FAILED_QUERIES = ("garden hose", "sofa bed", "lawn mower", "wedding dress", "xqzt", "aquarium pump",
                   "ski boots", "piano", "dog food", "asdf", "bike helmet 3000", "vaccum robot")
_DAYNAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_AGENT_NAMES = ("Sam", "Lea", "Tom", "Nina", "Omar", "Julia", "Ben", "Maya", "Lukas", "Ines")

_CALM_OPEN = ("Hi,", "Hello,", "Good morning,", "Hey there,", "Hi team,", "Hello there,", "Hi!", "")
_CALM_CLOSE = ("Thanks!", "Thank you.", "Appreciate it.", "Thanks in advance.", "", "", "Cheers.",
               "Thanks a lot.")
_CALM_BODY = {
    "late": (
        "my order {oid} was supposed to arrive on {day} but it hasn't come yet. Could you check the status?",
        "the {product} I ordered ({oid}) seems to be running late. Any update?",
        "just wondering where my parcel {oid} is, the tracking hasn't moved since {day}.",
        "could you tell me when {oid} will be delivered? It was promised for {day}.",
        "I'm waiting for the {product}, order {oid}. Is there a new delivery date?",
    ),
    "lost": (
        "the tracking for {oid} hasn't changed in days. Could it be lost?",
        "I never received order {oid} ({product}). What can we do?",
        "my parcel {oid} seems to be stuck somewhere. Can you look into it?",
    ),
    "return": (
        "I'd like to send back the {product} from order {oid}, it doesn't really suit me.",
        "how do I send back the {product}? Order {oid}.",
        "the {product} arrived with a small scratch. Can I get a replacement?",
        "I requested a refund for {oid}, could you confirm it went through?",
    ),
    "search": (
        "I can't find {thing} on your site, do you carry it?",
        "is {thing} available somewhere in your shop?",
        "the search doesn't show anything for {thing}. Do you sell it?",
    ),
    "question": (
        "does the {product} come with a warranty?",
        "is the {product} compatible with the {product2}?",
        "what is the delivery time for the {product}?",
        "can I pay the {product} in instalments?",
        "is the {product} available in another colour?",
        "do you offer gift wrapping for the {product}?",
    ),
    "delay": (
        "I got a note that {oid} is delayed. Do you know the new date?",
        "my order {oid} shows a delay. Will it still arrive this week?",
        "just saw the delay message for {oid}, what happened?",
    ),
}
_CALM_FOLLOW = (
    "Ok, thanks for checking.", "That works for me.", "Great, thank you for the quick help.",
    "Sure, the order number is {oid}.", "Got it. Have a nice day!", "Could you also send me the tracking link?",
    "Perfect, thanks.", "Alright, I'll wait then.", "Makes sense, thank you.", "Good to know, thanks!",
    "No problem, I can wait a couple of days.", "Thanks, that answers my question.",
)
_CALM_WAIT = ("Hello? Just checking if you got my message.", "Any news?", "No rush, just let me know.",
              "Still there?")
_CALM_HUMAN = (
    "Could I speak to a human, please?", "Would it be possible to talk to an agent?",
    "Can I talk to a real person about this?", "Could you connect me with a representative?",
    "I'd like to speak with a supervisor if possible.", "Is there a human agent available?",
)

_ANGRY_BODY = {
    "late": (
        "where is my order {oid}? it was due {day}",
        "the {product} is STILL not here, you promised {day}",
        "I paid for fast shipping and order {oid} is late again",
        "nobody tells me anything about {oid}, it was supposed to be here on {day}",
        "this is the {nth} time your delivery is late",
        "{oid} is days late and your tracking page says nothing",
    ),
    "lost": (
        "my parcel {oid} is LOST and nobody cares",
        "I never got the {product}, order {oid}, and I want my money back",
        "tracking for {oid} has been frozen for a week, where is my stuff",
        "you lost my order {oid}. how is that even possible",
    ),
    "return": (
        "the {product} arrived broken, order {oid}",
        "I sent the {product} back two weeks ago and still no refund",
        "your return process is a nightmare, order {oid}",
        "the {product} stopped working after two days",
    ),
    "search": (
        "your search is useless, I can't find {thing}",
        "why is it impossible to find {thing} on this site",
        "I searched for {thing} five times and got nothing",
    ),
    "question": (
        "I asked about the {product} yesterday and nobody answered",
        "why is the price of the {product} different at checkout",
        "the {product} page says in stock but I can't order it",
    ),
    "delay": (
        "ANOTHER delay on {oid}? seriously",
        "you just told me {oid} is delayed again. what is going on",
        "delayed? I needed the {product} for {day}",
    ),
}
_ANGRY_PRE = ("Seriously", "Unbelievable", "What the hell", "Damn it", "Ugh", "Come on", "Wow",
              "This is ridiculous", "Are you kidding me", "WTF")
_ANGRY_POST = ("Worst service ever", "I'm sick of this crap", "Absolutely useless",
               "Never ordering from you again", "I want my money back", "This is a joke",
               "Totally unacceptable", "What a damn mess", "I'm so done with this shop",
               "I'll leave a terrible review everywhere", "Pathetic", "Fix this NOW",
               "I'm going to cancel everything", "Bloody hell")
_ANGRY_WAIT = ("hello???", "anyone there", "is anybody reading this", "still waiting...",
               "{n} minutes and no answer", "answer please!!", "HELLO", "seriously, no reply?",
               "this chat is a joke", "are you even there??")
_ANGRY_FOLLOW = ("that doesn't help at all", "I don't want a voucher, I want my order",
                 "you said that last time", "so what now??", "that's not good enough",
                 "unbelievable. just unbelievable", "whatever", "why does this always happen to me",
                 "I've been a customer for years and this is how you treat me",
                 "just refund me", "I'm not waiting another week")
_ANGRY_HUMAN = (
    "I want to talk to a real person", "get me a supervisor NOW", "I want an agent, not a bot",
    "put me through to a human!!!", "let me speak to your manager", "is there a real person there???",
    "I demand a representative", "give me a human right now", "I need to speak to a supervisor",
)
_ANGRY_END = ("!!!", "!!", "???", "?!", "!!!!", "!", "?!?!")

_BOT_OPEN = (
    "Hi, I'm Robin, the virtual assistant. Let me look into this for you.",
    "Thanks for reaching out! Give me a second to check.",
    "Hello! I'm the virtual assistant, I'll do my best to help.",
)
_REPLIES = {  # topic -> replies by bot or agent
    "order": (
        "I found your order {oid}. The latest status is: {status}.",
        "I've contacted {carrier} and asked for an update on {oid}.",
        "I'm sorry about the trouble with {oid}. The new estimated delivery is {day}.",
        "I can offer you a {pct}% voucher for the inconvenience.",
        "I understand, I'm escalating {oid} to our delivery team right away.",
        "You can track your parcel any time under Account > Orders.",
        "I've opened an investigation with {carrier}; if the parcel doesn't show up we'll refund {oid}.",
    ),
    "return": (
        "I've sent you a prepaid return label by email.",
        "I'm sorry the {product} didn't work out. I've registered the return for {oid}.",
        "Your refund for {oid} is on its way; you'll see it in 3-5 business days.",
        "Could you send us a photo of the {product}? Then I can arrange a replacement.",
    ),
    "search": (
        "I'm sorry, we don't carry {thing} at the moment.",
        "Let me check our catalogue for {thing}... unfortunately nothing right now.",
        "We might get {thing} later this year; I can note your interest.",
    ),
    "question": (
        "Good question! The {product} comes with a 2-year warranty.",
        "Yes, the {product} works with the {product2}.",
        "The {product} usually ships within 1-2 business days.",
        "You can pay in 3 instalments at checkout for orders over 100 EUR.",
        "The {product} is available in black and silver.",
        "Gift wrapping is available at checkout for 3 EUR.",
    ),
}
_TOPIC = {"late": "late", "lost": "lost", "delay": "delay", "return": "return", "failed_search": "search",
          "question": "question"}
_CLOSING = ("Is there anything else I can help you with?", "Thanks for your patience, have a good day!",
            "Glad I could help.")
_STATUSES = ("in transit", "at the local depot", "out for delivery", "awaiting carrier scan", "delayed")


def _shout(rng: random.Random, text: str) -> str:
    u = rng.random()
    if u < 0.3:
        return text.upper()
    if u < 0.7:
        words = text.split(" ")
        for _ in range(rng.randint(1, 2)):
            i = rng.randrange(len(words))
            if len(words[i]) > 3:
                words[i] = words[i].upper()
        return " ".join(words)
    return text


# --------------------------------------------------------------------------------------------
# Customers
# --------------------------------------------------------------------------------------------

class _Customer:
    """One customer's life. Events are (ts, seq, type, fields) tuples."""

    def __init__(self, idx: int, seed: int, cat: Catalogue, start: int, end: int):
        self.idx = idx
        self.cid = f"c{idx:06d}"
        self.r = r = random.Random(seed * 1_000_003 + idx * 7919 + 17)
        self.cat = cat
        self.start, self.end = start, end
        self.ev: list[tuple[int, int, str, dict]] = []
        self.seq = 0
        self.convs: list[tuple[str, bool]] = []  # (conversation_id, frustrated)
        # habits
        self.vip = r.random() < 0.012
        if self.vip:
            self.rate = r.uniform(1.0, 2.2)
            self.segment = 2
            self.abandon = r.uniform(0.08, 0.25)
            self.shop = r.uniform(0.6, 0.8)
        else:
            self.rate = min(2.0, max(0.02, math.exp(r.gauss(math.log(0.3), 0.8))))
            self.segment = r.choices((0, 1, 2), (0.35, 0.45, 0.2))[0]
            self.abandon = r.betavariate(2.0, 2.6)
            self.shop = r.uniform(0.2, 0.55)
        self.help = r.betavariate(1.3, 10.0)
        self.irritability = r.betavariate(2.0, 4.0)
        self.prefs = [self._pick_cat(), self._pick_cat()]
        self.h0 = 0.0055 * (0.3 / self.rate) ** 0.8 * r.lognormvariate(0.0, 0.35)
        if self.vip:
            self.h0 *= 0.15
        # joining: most customers already exist at the start, the others join over time
        if r.random() < 0.72:
            self.join = start
            self.new = False
        else:
            self.join = start + int(r.random() * max(DAY, end - start - DAY))
            self.new = True
        # latent state
        self.bad = 0.0
        self.sat = 0.0
        self.frus = 0.0
        self.t_state = self.join
        self.fade_end: int | None = None
        self.cart: dict[int, list] = {}  # product -> [quantity, price]
        self.viewed: list[int] = []
        # (product, from_ts, until_ts): complements of bought items, consumables running out
        self.wish: list[tuple[int, int, int]] = []
        self.pending: list[tuple[int, int, str, Any]] = []  # experiences heap
        self.forced: list[int] = []  # forced session times (after problems)
        self.problem_flag = False
        self.n_orders = 0
        self.n_sessions = 0
        self.n_convs = 0
        self.late_count = 0
        # item-level taste: favourite brands (how loyal) and price tier inside any category
        self.brands = [cat.pick_brand(r), cat.pick_brand(r)]
        self.loyal = r.uniform(0.3, 0.85)
        self.tier = self.segment
        self.mission: Optional[list] = None  # [anchor product, until_ts]: what the customer is shopping for
        self.now = start
        self.cart_ts: Optional[int] = None  # the latest cart activity
        self.nudged = False  # the next session is a return for the reminded cart
        self.last_reminder = -REMIND_COOLDOWN
        self.cat_seed = seed
        self._consent()

    # ---------------------------------------------------------------- helpers
    def _pick_cat(self) -> int:
        cw = self.cat.cat_weight
        x = self.r.random() * sum(cw)
        for i, w in enumerate(cw):
            x -= w
            if x <= 0:
                return i
        return len(cw) - 1

    def emit(self, ts: int, etype: str, fields: dict) -> None:
        self.ev.append((ts, self.seq, etype, fields))
        self.seq += 1
        if etype in CART_ACTIVITY:
            self.cart_ts = ts

    # ---------------------------------------------------------------- consent and reminders
    def _consent(self) -> None:
        """Consent events (own random stream: the rest of the life is the same as without them):
        most grant marketing by email (some sms, push) when they join, some say no, some say
        nothing; a few revoke later. Half tell their time zone."""
        rc = self.rc = random.Random(self.idx * 104_729 + self.cat_seed * 2_000_029 + 3)
        self.zone = rc.choice(_ZONES) if rc.random() < 0.5 else None
        self.granted: list[tuple[int, bool]] = []  # (ts, email marketing allowed from then on)
        ts = self.join + rc.randrange(10 * MIN)
        u = rc.random()
        extra = {"timezone": self.zone} if self.zone else {}
        if u < 0.82:
            self.emit(ts, "consent_updated", {"channel": "email", "purpose": "marketing", "granted": True, **extra})
            for ch, p in (("sms", 0.4), ("push", 0.3)):
                if rc.random() < p:
                    self.emit(ts + SEC, "consent_updated", {"channel": ch, "purpose": "marketing", "granted": True})
            self.granted.append((ts, True))
            if rc.random() < 0.08:
                rts = ts + int(rc.random() * max(DAY, self.end - ts))
                self.emit(rts, "consent_updated", {"channel": "all", "purpose": "marketing", "granted": False})
                self.granted.append((rts, False))
        elif u < 0.88:
            self.emit(ts, "consent_updated", {"channel": "all", "purpose": "marketing", "granted": False, **extra})

    def _may_email(self, ts: int) -> bool:
        ok = False
        for t, g in self.granted:
            if t <= ts:
                ok = g
        return ok

    def _remind(self, last_end: int, next_t: int) -> int:
        """A cart left at the end of the session: would the engine remind them (consent, not held
        out, the night over before they come back on their own, no reminder in the cooldown)? Then
        sometimes they come back for it; returns the next session's time."""
        if not self.cart or self.cart_ts is None or self.cart_ts < last_end - 2 * HOUR:
            return next_t
        due = self.cart_ts + IDLE
        send = QUIET.release(due, self.zone or QUIET.default_zone) or due
        if next_t <= send + 5 * MIN or due - self.last_reminder < REMIND_COOLDOWN or not self._may_email(send):
            return next_t
        self.last_reminder = due
        if in_holdout(self.cid, "abandoned_cart", _HOLDOUT_SHARE, _HOLDOUT_KEY):
            return next_t
        if self.rc.random() >= REMIND_RESPONSE:
            return next_t
        back = max(send + int(self.rc.uniform(10 * MIN, 6 * HOUR)), last_end + SESSION_MIN_GAP)
        if back < next_t:
            self.nudged = True
            return back
        return next_t

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

    def _decay(self, ts: int) -> None:
        dt = (ts - self.t_state) / DAY
        if dt > 0:
            self.bad *= math.exp(-dt / 25.0)
            self.sat *= math.exp(-dt / 40.0)
            self.frus *= math.exp(-dt / 5.0)
            self.t_state = ts

    def hazard(self, ts: int) -> float:
        h = self.h0 * math.exp(0.7 * self.bad - 0.3 * min(self.sat, 3.0))
        if self.new and ts - self.join < 14 * DAY:
            h *= 1.6
        return h

    # ---------------------------------------------------------------- life
    def run(self) -> None:
        r = self.r
        cutoff = self.end - 3 * HOUR  # no session starts later: abandoned carts are decidable
        if self.new:
            t = self.join
        else:
            t = self.start + int(r.expovariate(self.rate) * DAY * 0.7)
        last_end = self.start - DAY
        last_check = self.join
        while True:
            # a forced session (after a problem) can come before the natural one
            if self.forced:
                ft = max(self.forced[0], last_end + SESSION_MIN_GAP)
                if ft < t:
                    t = ft
            # experiences that happen before the session
            while self.pending and self.pending[0][0] <= t:
                ets, _s, kind, data = heapq.heappop(self.pending)
                if self.fade_end is not None and ets > self.fade_end:
                    continue
                self.experience(ets, kind, data, last_end)
                if self.forced:
                    ft = max(self.forced[0], last_end + SESSION_MIN_GAP)
                    if ft < t:
                        t = ft
            if self.forced and self.forced[0] <= t:
                self.forced.pop(0)
                problem = True
            else:
                problem = False
            # churn hazard between the last check and this session
            if self.fade_end is None and t > last_check:
                self._decay(t)
                dt = (t - last_check) / DAY
                if r.random() < 1.0 - math.exp(-self.hazard(t) * dt):
                    decide = last_check + int(r.random() * (t - last_check))
                    self.fade_end = decide + int(r.uniform(5.0, 18.0) * DAY)
                last_check = t
            if t >= cutoff or (self.fade_end is not None and t >= self.fade_end):
                break
            last_end = self.session(t, problem)
            cart_after = bool(self.cart)
            # next natural session
            rate = self.rate
            if self.fade_end is not None:
                rate *= 0.25
            if any(w[1] <= last_end for w in self.wish) and r.random() < 0.5:
                gap = int(r.uniform(0.3, 3.0) * DAY)
            else:
                gap = int(r.expovariate(rate) * DAY)
            t = last_end + max(SESSION_MIN_GAP, gap)
            hour = (t % DAY) / HOUR
            if hour < 7.0 and r.random() < 0.85:
                t += int((7.0 - hour + r.random() * 14.0) * HOUR)
            if cart_after:
                t = self._remind(last_end, t)
        if self.fade_end is not None:  # gone: they do not come back to revoke consent either
            self.ev = [e for e in self.ev if e[2] != "consent_updated" or e[0] <= self.fade_end]
        # remaining experiences still produce chats while the customer is around
        stop = self.end if self.fade_end is None else min(self.end, self.fade_end)
        while self.pending and self.pending[0][0] < stop:
            ets, _s, kind, data = heapq.heappop(self.pending)
            self.experience(ets, kind, data, last_end, sessions=False)

    # ---------------------------------------------------------------- experiences
    def push(self, ts: int, kind: str, data: Any = None) -> None:
        heapq.heappush(self.pending, (ts, self.seq, kind, data))
        self.seq += 1

    def experience(self, ts: int, kind: str, data: Any, last_end: int, sessions: bool = True) -> None:
        r = self.r
        self._decay(ts)
        chat_p = 0.0
        problem_p = 0.0
        if kind == "late":
            self.late_count += 1
            self.bad += 1.0
            self.frus += 0.35
            chat_p, problem_p = 0.3 + 0.5 * self.help, 0.5
        elif kind == "lost":
            self.bad += 1.8
            self.frus += 0.55
            chat_p, problem_p = 0.55 + 0.4 * self.help, 0.7
        elif kind == "delay":
            self.bad += 0.35
            self.frus += 0.15
            chat_p, problem_p = 0.12 + 0.3 * self.help, 0.25
        elif kind == "return":
            self.bad += 0.3
            self.frus += 0.1
            chat_p, problem_p = 0.2 + 0.4 * self.help, 0.3
        elif kind == "refund":
            self.bad += 0.2
        elif kind == "delivered":
            self.bad = max(0.0, self.bad - 0.35)
            self.sat += 0.3
        elif kind == "failed_search":
            self.bad += 0.1
            self.frus += 0.05
            chat_p = 0.04 + 0.2 * self.help
        elif kind == "question":
            chat_p = 1.0
        self.frus = min(self.frus, 1.5)
        if chat_p and r.random() < chat_p:
            ct = ts if kind == "question" else ts + int(r.uniform(2 * MIN, 5 * HOUR))
            hour = (ct % DAY) / HOUR
            if hour < 7.0 and r.random() < 0.8:
                ct += int((7.0 - hour + r.random() * 4.0) * HOUR)
            self.chat(ct, _TOPIC[kind], data)
        if sessions and problem_p and r.random() < problem_p:
            self.problem_flag = True
            heapq_t = ts + int(r.uniform(5 * MIN, 8 * HOUR))
            self.forced.append(heapq_t)
            self.forced.sort()

    # ---------------------------------------------------------------- sessions
    def session(self, t: int, problem: bool) -> int:
        r, cat = self.r, self.cat
        sid = f"s{self.idx:06d}{self.n_sessions:04d}"
        self.n_sessions += 1
        emit = self.emit
        t0 = t
        self.wish = [w for w in self.wish if w[2] > t]
        self.now = t

        def step(lo: float = 4.0, median: float = 35.0, hi: float = 540.0) -> int:
            return int(min(hi, max(lo, r.lognormvariate(math.log(median), 0.8))) * SEC) + r.randrange(SEC)

        if problem:
            emit(t, "page_view", {"session_id": sid, "page": r.choice(("/account/orders", "/", "/help"))})
            n_help = r.randint(3, 5) if r.random() < 0.65 else r.randint(1, 2)
            for i in range(n_help):
                t += step(10, 60, 420)
                emit(t, "help_view", {"session_id": sid, "page": r.choice(_HELP_PAGES)})
                if i == 0 and r.random() < 0.25 + 0.15 * min(self.bad, 2.0):
                    t += step()
                    emit(t, "search", {"session_id": sid, "query": r.choice(_EXIT_QUERIES), "results": r.randint(1, 6)})
            if r.random() < 0.4:
                t += step()
                emit(t, "page_view", {"session_id": sid, "page": "/account/orders"})
            return t

        need_add_first = bool(self.cart)  # a previous episode was abandoned
        u = r.random()
        nudged, self.nudged = self.nudged, False
        if self.cart and (u < 0.45 or nudged):
            mode = "resume"
        elif u < self.shop * (0.5 if self.fade_end is not None else 1.0):
            mode = "shop"
        else:
            mode = "browse"
        focus = self.focus(t)
        first_page = "/cart" if mode == "resume" else r.choice(_PAGES[:4] + (f"/c/{cat.cat_names[cat.cat[focus]]}",))
        emit(t, "page_view", {"session_id": sid, "page": first_page})
        n_actions = r.randint(2, 9) if mode == "browse" else r.randint(3, 12)
        adds_wanted = 0 if mode == "browse" else r.choice((1, 1, 1, 2, 2, 3))
        if mode == "browse" and r.random() < 0.15:
            adds_wanted = 1
        adds = 0
        bundled = False  # at most one accessory bundle per session
        last_p = -1
        last_cart = t
        for _i in range(n_actions):
            nt = t + step()
            if nt - t0 > 90 * MIN:
                break
            if self.cart and not need_add_first and nt - last_cart > 15 * MIN:
                break  # keep a live cart's activities well within the idle time
            t = nt
            u = r.random()
            if u < 0.12:
                # search
                if r.random() < 0.06:
                    q = r.choice(_FAILED_QUERIES)
                    emit(t, "search", {"session_id": sid, "query": q, "results": 0})
                    if r.random() < 0.5:
                        self.push(t + 1, "failed_search", q)
                elif r.random() < 0.01 + 0.1 * min(self.bad, 2.0):
                    emit(t, "search", {"session_id": sid, "query": r.choice(_EXIT_QUERIES), "results": r.randint(1, 5)})
                else:
                    p = self.related(focus)
                    noun = cat.nouns[cat.cat[p]]
                    q = r.choice((noun, f"{cat.names[p].split(' ')[0]} {noun}", f"cheap {noun}", f"best {noun}",
                                  cat.names[p].lower(), f"{noun} deals"))
                    emit(t, "search", {"session_id": sid, "query": q, "results": r.randint(3, 60)})
                    last_p = p
                    t += step()
                    emit(t, "product_view", {"session_id": sid, "product_id": cat.ids[p], "price": cat.price[p]})
                    self.viewed.append(p)
            elif u < 0.18:
                emit(t, "page_view", {"session_id": sid, "page": r.choice(_PAGES)})
            elif u < 0.18 + 0.25 * self.help:
                emit(t, "help_view", {"session_id": sid, "page": r.choice(_HELP_PAGES)})
            else:
                if last_p >= 0 and cat.complements[last_p] and r.random() < 0.3:
                    p = r.choice(cat.complements[last_p])
                else:
                    p = self.related(focus)
                emit(t, "product_view", {"session_id": sid, "product_id": cat.ids[p], "price": cat.price[p]})
                self.viewed.append(p)
                last_p = p
                if r.random() < 0.004:
                    self.push(t + 1, "question", p)
            # cart actions
            if adds < adds_wanted and last_p >= 0 and r.random() < 0.55:
                t += step(3, 20, 300)
                q = 1 if r.random() < 0.88 else r.randint(2, 3)
                price = cat.price[last_p]
                item = self.cart.get(last_p)
                if item:
                    item[0] += q
                else:
                    self.cart[last_p] = [q, price]
                emit(t, "add_to_cart", {"session_id": sid, "product_id": cat.ids[last_p], "price": price, "quantity": q})
                adds += 1
                need_add_first = False
                last_cart = t
                comp = cat.complements[last_p]
                if comp and not bundled and r.random() < 0.45:
                    bundled = True
                    # a bundle: the item's own accessory goes into the same cart
                    c = comp[r.randrange(len(comp))]
                    t += step(5, 30, 240)
                    emit(t, "product_view", {"session_id": sid, "product_id": cat.ids[c], "price": cat.price[c]})
                    self.viewed.append(c)
                    t += step(3, 15, 240)
                    item = self.cart.get(c)
                    if item:
                        item[0] += 1
                    else:
                        self.cart[c] = [1, cat.price[c]]
                    emit(t, "add_to_cart", {"session_id": sid, "product_id": cat.ids[c], "price": cat.price[c], "quantity": 1})
                    last_cart = t
                    last_p = c
            elif (not need_add_first) and self.cart and r.random() < 0.05:
                t += step(3, 20, 300)
                self._remove(t, sid)
                last_cart = t
        # tail: resume needs an add first
        if mode == "resume" and need_add_first:
            p = self.related(focus)
            t += step()
            emit(t, "product_view", {"session_id": sid, "product_id": cat.ids[p], "price": cat.price[p]})
            t += step(3, 20, 300)
            price = cat.price[p]
            item = self.cart.get(p)
            if item:
                item[0] += 1
            else:
                self.cart[p] = [1, price]
            emit(t, "add_to_cart", {"session_id": sid, "product_id": cat.ids[p], "price": price, "quantity": 1})
            need_add_first = False
        if self.cart and not need_add_first:
            u = r.random()
            if u < 0.04:
                # removes everything: the episode ends without abandonment
                while self.cart:
                    t += step(3, 15, 120)
                    self._remove(t, sid)
            else:
                p_checkout = 1.0 - self.abandon
                if mode == "browse":
                    p_checkout *= 0.4
                if mode == "resume":
                    p_checkout = min(0.95, p_checkout + 0.3)
                if nudged:  # came back for the reminded cart
                    p_checkout = 0.9
                if self.fade_end is not None:
                    p_checkout *= 0.6
                if r.random() < p_checkout:
                    t += step(5, 40, 400)
                    emit(t, "checkout_started", {"session_id": sid})
                    if r.random() < 0.06:
                        pass  # payment trouble: leaves, the cart is abandoned
                    else:
                        t += step(15, 70, 500)
                        self.place_order(t)
                # else: the customer simply stops touching the cart
        # a few more views after the cart (or none)
        for _ in range(r.choice((0, 0, 1, 2))):
            t += step()
            p = self.product()
            emit(t, "product_view", {"session_id": sid, "product_id": cat.ids[p], "price": cat.price[p]})
        if len(self.viewed) > 20:
            del self.viewed[:-20]
        return t

    def _remove(self, t: int, sid: str) -> None:
        keys = sorted(self.cart)
        p = keys[self.r.randrange(len(keys))]
        q = self.cart.pop(p)[0]
        self.emit(t, "remove_from_cart", {"session_id": sid, "product_id": self.cat.ids[p], "quantity": q})

    # ---------------------------------------------------------------- orders
    def place_order(self, t: int) -> None:
        r, cat = self.r, self.cat
        oid = f"o{self.idx:06d}{self.n_orders:04d}"
        self.n_orders += 1
        items = [{"product_id": cat.ids[p], "quantity": qp[0], "price": qp[1]} for p, qp in sorted(self.cart.items())]
        products = sorted(self.cart)
        total = round(sum(qp[0] * qp[1] for qp in self.cart.values()), 2)
        self.cart = {}
        promised = (t // DAY) * DAY + r.choice((2, 2, 3, 3, 3, 4, 5)) * DAY + r.choice((12, 18, 20)) * HOUR
        emit = self.emit
        emit(t, "order_placed", {"order_id": oid, "items": items, "total": total, "currency": "EUR",
                                 "promised_delivery_ts": iso(promised)})
        # what was wanted is done; complements of what was bought are wanted within days, and
        # consumables are wanted again when they run out
        bought = set(products)
        self.wish = [w for w in self.wish if w[0] not in bought]
        if self.mission is not None:
            a = self.mission[0]
            if a in bought or any(q in bought for q in cat.similar[a]):
                self.mission = None
        for p in products:
            for c in cat.complements[p]:
                if c not in bought and r.random() < 0.45:
                    self.wish.append((c, t, t + int(r.uniform(1, 10) * DAY)))
            rep_days = cat.replenish[p]
            if rep_days and r.random() < 0.6:
                due = t + int(r.uniform(*rep_days) * DAY)
                self.wish.append((p, due, due + int(r.uniform(5, 15) * DAY)))
        name = cat.names[products[0]] if products else "item"
        info = {"oid": oid, "product": name, "promised": promised}
        if r.random() < 0.03:
            emit(t + int(r.uniform(10 * MIN, 10 * HOUR)), "order_cancelled",
                 {"order_id": oid, "reason": r.choice(_CANCEL_REASONS)})
            return
        cidx = bisect.bisect_right(_CARRIER_CUM, r.random() * _CARRIER_CUM[-1])
        carrier, _share, late_rate, lost_rate = _CARRIERS[min(cidx, len(_CARRIERS) - 1)]
        info["carrier"] = carrier
        ship = t + int(r.uniform(3 * HOUR, 28 * HOUR))
        promise = promised
        shipped = {"order_id": oid, "carrier": carrier}
        if r.random() < 0.08:
            promise = promised + r.choice((-1, 1)) * DAY
            if promise < ship + 12 * HOUR:
                promise = promised + DAY
            shipped["promised_delivery_ts"] = iso(promise)
        emit(ship, "order_shipped", shipped)
        u = r.random()
        if u < lost_rate:
            if r.random() < 0.4:
                emit(promise - int(r.uniform(0, 20 * HOUR)), "order_delayed",
                     {"order_id": oid, "reason": "parcel_not_found"})
            self.push(promise + int(r.uniform(6 * HOUR, 2 * DAY)), "lost", info)
            if r.random() < 0.6:
                emit(promise + int(r.uniform(5, 9) * DAY), "refund_issued",
                     {"order_id": oid, "amount": total, "reason": "lost_parcel"})
            return
        if u < lost_rate + late_rate:
            if r.random() < 0.55:
                lateness = int(r.uniform(2.3 * HOUR, 22 * HOUR))
            else:
                lateness = int(r.uniform(1.0, 6.0) * DAY)
            delivered = promise + lateness
            if r.random() < 0.55:
                lo = ship + HOUR
                hi = min(delivered, promise) - 5 * MIN
                dts = lo + int(r.random() * max(0, hi - lo))
                f = {"order_id": oid, "reason": r.choice(_DELAY_REASONS)}
                if r.random() < 0.7:
                    f["promised_delivery_ts"] = iso(delivered + int(r.uniform(0, 8 * HOUR)))
                emit(dts, "order_delayed", f)
                self.push(dts, "delay", info)
            self.push(min(delivered, promise + int(r.uniform(2, 10) * HOUR)), "late", info)
        elif u < lost_rate + late_rate + 0.05:
            delivered = promise + int(r.uniform(10 * MIN, 110 * MIN))  # a bit late, within grace
        else:
            delivered = promise - int(r.uniform(0, 30 * HOUR))
            delivered = max(delivered, ship + 6 * HOUR)
            if r.random() < 0.015:  # carrier warns, then makes it anyway
                emit(ship + int((delivered - ship) * r.uniform(0.2, 0.8)), "order_delayed",
                     {"order_id": oid, "reason": r.choice(_DELAY_REASONS)})
        emit(delivered, "order_delivered", {"order_id": oid, "carrier": carrier})
        if delivered <= promise + GRACE:
            self.push(delivered, "delivered", info)
        if r.random() < (0.06 if delivered <= promise + GRACE else 0.12):
            rts = delivered + int(r.uniform(1, 10) * DAY)
            emit(rts, "return_requested", {"order_id": oid, "reason": r.choice(_RETURN_REASONS)})
            self.push(rts, "return", info)
            if r.random() < 0.75:
                emit(rts + int(r.uniform(2, 7) * DAY), "refund_issued", {"order_id": oid, "amount": total})

    # ---------------------------------------------------------------- chats
    def chat(self, t: int, topic: str, data: Any) -> None:
        r, cat = self.r, self.cat
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
        if isinstance(data, dict):
            oid, product = data["oid"], data["product"]
            day = _DAYNAMES[(data["promised"] // DAY + 3) % 7]
            carrier = data.get("carrier", "the carrier")
        else:
            oid = f"o{self.idx:06d}{max(0, self.n_orders - 1):04d}"
            product = cat.names[data] if isinstance(data, int) else cat.names[cat.pick(r)]
            day = r.choice(_DAYNAMES)
            carrier = "the carrier"
        thing = data if isinstance(data, str) else r.choice(_FAILED_QUERIES)
        comp = cat.complements[data] if isinstance(data, int) else []
        p2 = r.choice(comp) if comp else cat.pick(r)
        fill = {"oid": oid, "product": product, "product2": cat.names[p2], "day": day,
                "thing": thing, "nth": r.choice(("second", "third", "fourth")), "carrier": carrier,
                "aname": r.choice(_AGENT_NAMES), "pct": r.choice((5, 10, 15, 20)),
                "status": r.choice(_STATUSES)}
        key = topic
        pool = _REPLIES.get(key, _REPLIES["order"])
        msgs: list[tuple[int, str, str]] = []

        def cust_first() -> str:
            if frustrated:
                s = r.choice(_ANGRY_BODY[key]).format(**fill)
                if r.random() < 0.45:
                    s = f"{r.choice(_ANGRY_PRE)}, {s}"
                s = _shout(r, s) + r.choice(_ANGRY_END)
                for _ in range(r.choice((0, 1, 1, 2))):
                    s += " " + _shout(r, r.choice(_ANGRY_POST)) + r.choice(_ANGRY_END)
                return s
            s = r.choice(_CALM_BODY[key]).format(**fill)
            o = r.choice(_CALM_OPEN)
            s = f"{o} {s}" if o else s[0].upper() + s[1:]
            c = r.choice(_CALM_CLOSE)
            return f"{s} {c}" if c else s

        def cust_next() -> str:
            if frustrated:
                s = r.choice(_ANGRY_FOLLOW).format(**fill)
                if r.random() < 0.4:
                    s += ". " + r.choice(_ANGRY_POST)
                return _shout(r, s) + r.choice(_ANGRY_END)
            return r.choice(_CALM_FOLLOW).format(**fill)

        def cust_wait(waited_min: int) -> str:
            if frustrated:
                return _shout(r, r.choice(_ANGRY_WAIT).format(n=waited_min)) + r.choice(_ANGRY_END[:3])
            return r.choice(_CALM_WAIT)

        n_cust = r.randint(3, 7) if frustrated else r.randint(1, 3)
        wants_human = r.random() < (0.4 if frustrated else 0.06)
        human_at = r.randrange(n_cust) if wants_human else -1
        reply_by = "bot" if r.random() < 0.5 else "agent"
        for i in range(n_cust):
            text = cust_first() if i == 0 else cust_next()
            if i == human_at:
                h = r.choice(_ANGRY_HUMAN if frustrated else _CALM_HUMAN)
                if frustrated:
                    h = _shout(r, h) if r.random() < 0.5 else h
                text = h if r.random() < 0.5 else f"{text} {h}"
            msgs.append((t, "customer", text))
            if i == n_cust - 1 and r.random() < 0.5:
                break
            # reply, sometimes slow: the customer writes again (3 in a row within 10 min)
            if r.random() < (0.35 if frustrated else 0.1):
                t1 = t
                for _ in range(2 if (frustrated or r.random() < 0.3) else 0):
                    t1 += int(r.uniform(1 * MIN, 4 * MIN))
                    msgs.append((t1, "customer", cust_wait((t1 - t) // MIN + 1)))
                t = t + int(r.uniform(11 * MIN, 25 * MIN))
                t = max(t, t1 + 30 * SEC)
            else:
                t += int(r.uniform(15 * SEC, 4 * MIN))
            sender = reply_by
            if reply_by == "bot" and i >= 1:
                sender = "agent"
            if i == 0 and sender == "bot":
                reply = r.choice(_BOT_OPEN)
            elif i == 0:
                reply = f"Hi, this is {fill['aname']} from the care team. " + r.choice(pool)
            elif i == n_cust - 1 and r.random() < 0.5:
                reply = r.choice(_CLOSING)
            else:
                reply = r.choice(pool)
            msgs.append((t, sender, reply.format(**fill)))
            t += int(r.uniform(20 * SEC, 5 * MIN))
        # outcome
        closed: dict | None = None
        if frustrated:
            if r.random() >= 0.22:  # else abandoned: no chat_closed at all
                esc = r.random() < (0.75 if human_at >= 0 else 0.5)
                csat = r.choices((1, 2, 3, 4, 5), (0.45, 0.25, 0.15, 0.1, 0.05))[0]
                closed = {"escalated": esc, "csat": csat}
        else:
            if r.random() >= 0.03:
                esc = r.random() < (0.3 if human_at >= 0 else 0.03)
                csat = r.choices((1, 2, 3, 4, 5), (0.02, 0.04, 0.14, 0.36, 0.44))[0]
                closed = {"escalated": esc, "csat": csat}
                if r.random() < 0.1 and not esc:
                    del closed["csat"]
        last = msgs[-1][0]
        end_ts = last + int(r.uniform(1 * MIN, 15 * MIN))
        if end_ts >= self.end or (self.fade_end is not None and end_ts >= self.fade_end):
            return  # the conversation would not fit: it does not happen
        for ts, sender, text in msgs:
            self.emit(ts, "chat_message", {"conversation_id": conv, "sender": sender, "text": text})
        if closed is not None:
            closed = {"conversation_id": conv, **closed}
            self.emit(end_ts, "chat_closed", closed)
        self.convs.append((conv, frustrated))
        self._decay(end_ts)
        if frustrated:
            self.bad += 0.8
            self.frus = min(1.5, self.frus + 0.2)
        elif closed is not None and closed.get("csat", 3) >= 4:
            self.bad = max(0.0, self.bad - 0.2)
            self.frus *= 0.6


# --------------------------------------------------------------------------------------------
# Truth from emitted events
# --------------------------------------------------------------------------------------------

def compute_cart_truth(events: list[tuple[int, str, dict]], end: int) -> list[tuple[bool, int]]:
    """Cart episodes of one customer from its (ts, type, fields) events sorted by ts.

    Returns (abandoned, last_activity_ts) per episode. ``events`` holds product ids in fields.
    """
    out: list[tuple[bool, int]] = []
    cart: dict[str, int] = {}
    open_ = False
    last = 0
    for ts, etype, f in events:
        if etype not in CART_ACTIVITY and etype != "order_placed":
            continue
        if open_ and cart and ts > last + IDLE:
            out.append((True, last))
            open_ = False
        if etype == "add_to_cart":
            if not open_:
                open_ = True
            cart[f["product_id"]] = cart.get(f["product_id"], 0) + f.get("quantity", 1)
            last = ts
        elif etype == "remove_from_cart":
            if open_:
                last = ts
            cart.pop(f["product_id"], None)
            if open_ and not cart:
                out.append((False, last))
                open_ = False
        elif etype == "checkout_started":
            if open_:
                last = ts
        else:  # order_placed
            cart = {}
            if open_:
                out.append((False, last))
                open_ = False
    if open_ and cart:
        out.append((last + IDLE <= end, last))
    return out


def compute_order_truth(events: list[tuple[int, str, dict]], end: int,
                        open_due: Optional[dict[str, int]] = None) -> dict[str, bool]:
    """Orders of one customer that are owed a ``delay_apology``, from its (ts, type, fields) events
    sorted by ts, with the contract's semantics: an order neither delivered nor cancelled gets one
    when the carrier reports a delay or when its promise (the latest ``promised_delivery_ts``, which
    ``order_shipped`` and ``order_delayed`` may update) is missed by more than the grace, whichever
    comes first; orders still open at ``end`` count if their due time is at or before ``end`` (or,
    with ``open_due``, have their due time put there to be decided later)."""
    promise: dict[str, int] = {}
    late: dict[str, bool] = {}
    closed: set[str] = set()

    def missed_before(ts: int) -> None:  # promise timers that expired before this event
        for oid, p in promise.items():
            if oid not in closed and not late[oid] and p + GRACE < ts:
                late[oid] = True

    for ts, etype, f in events:
        missed_before(ts)
        oid = f.get("order_id")
        if etype == "order_placed":
            promise[oid] = parse_ts(f["promised_delivery_ts"])
            late[oid] = False
            continue
        if oid not in promise or oid in closed:
            continue
        if etype in ("order_delivered", "order_cancelled"):
            closed.add(oid)
        elif etype in ("order_shipped", "order_delayed"):
            if etype == "order_delayed":
                late[oid] = True
            if f.get("promised_delivery_ts"):
                promise[oid] = parse_ts(f["promised_delivery_ts"])
    for oid, p in promise.items():
        if oid not in closed and not late[oid]:
            if open_due is not None:
                open_due[oid] = p + GRACE
            elif p + GRACE <= end:
                late[oid] = True
    return late


# --------------------------------------------------------------------------------------------
# generate
# --------------------------------------------------------------------------------------------

_BAD_KINDS = (  # kind, weight
    ("truncated_json", 0.14), ("garbage_bytes", 0.08), ("missing_field", 0.14),
    ("price_string", 0.08), ("quantity_zero", 0.07), ("ts_no_offset", 0.08), ("unknown_type", 0.07),
    ("duplicate", 0.22), ("late", 0.12),
)
_UNKNOWN_TYPES = ("wishlist_add", "page_vieww", "coupon_applied", "ORDER_PLACED", "login", "")


def generate(customers: int, days: int, seed: int, out_dir: Path, start: str = "2026-01-05T00:00:00Z",
             bad_share: float = 0.005) -> dict:
    """Simulate ``customers`` customers for ``days`` days; write events.jsonl and truth.jsonl.

    Returns stats: events (real events), lines (all lines written), bad (count per bad kind),
    bad_lines, customers, orders, conversations, carts, and the truth shares.
    """
    gc_was_enabled = gc.isenabled()
    gc.disable()  # millions of small acyclic objects: the cyclic GC only costs time here
    try:
        return _generate(customers, days, seed, Path(out_dir), start, bad_share)
    finally:
        if gc_was_enabled:
            gc.enable()


def _line(obj: dict) -> bytes:
    return orjson.dumps(obj, option=orjson.OPT_APPEND_NEWLINE)


def _generate(customers: int, days: int, seed: int, out_dir: Path, start: str, bad_share: float) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    start_ms = parse_ts(start)
    end_ms = start_ms + days * DAY
    cat = catalogue(seed)

    rows: list[tuple[int, int, int, bytes]] = []  # (ts, customer, seq, body)
    # truth lines go straight into byte buffers (orjson results are page-sized; do not keep them)
    truth_customers = bytearray()
    truth_carts = bytearray()
    truth_orders = bytearray()
    truth_convs = bytearray()
    n = dict(orders=0, late=0, carts=0, abandoned=0, conversations=0, frustrated=0, human=0, churned=0)
    cids: list[str] = []
    # An order still open at the end is owed an apology if its due time is at or before the latest
    # event time of the log: that is when a replay's end-of-input flush fires timers.
    orders_pending: list[tuple[str, str, bool, Optional[int]]] = []
    last_event = start_ms
    for idx in range(customers):
        c = _Customer(idx, seed, cat, start_ms, end_ms)
        c.run()
        cid = c.cid
        cids.append(cid)
        evs = [e for e in c.ev if start_ms <= e[0] < end_ms]
        evs.sort(key=lambda e: (e[0], e[1]))
        # truth from the emitted events
        simple = [(e[0], e[2], e[3]) for e in evs]
        for abandoned, last in compute_cart_truth(simple, end_ms):
            truth_carts.extend(_line({"kind": "cart", "customer_id": cid, "abandoned": abandoned,
                                             "last_activity_ts": iso(last)}))
            n["carts"] += 1
            n["abandoned"] += abandoned
        open_due: dict[str, int] = {}
        for oid, late in compute_order_truth([s for s in simple if s[1].startswith("order_")], end_ms,
                                             open_due).items():
            orders_pending.append((oid, cid, late, open_due.get(oid)))
        if evs:
            last_event = max(last_event, evs[-1][0])
        human: dict[str, bool] = {}
        for _ts, et, f in simple:
            if et == "chat_message" and f["sender"] == "customer" and HUMAN_RE.search(f["text"]):
                human[f["conversation_id"]] = True
        for conv, frus in c.convs:
            h = human.get(conv, False)
            truth_convs.extend(_line({"kind": "conversation", "conversation_id": conv, "customer_id": cid,
                                             "frustrated": frus, "human_requested": h}))
            n["conversations"] += 1
            n["frustrated"] += frus
            n["human"] += h
        churned = c.fade_end is not None and c.fade_end <= end_ms and bool(evs)
        churn_ts = iso(evs[-1][0]) if churned else None
        n["churned"] += churned
        truth_customers.extend(_line({"kind": "customer", "customer_id": cid, "churned": churned,
                                             "churn_ts": churn_ts}))
        for ts, seq, et, f in evs:
            # slice at once: orjson's result owns a page-sized buffer, the slice is compact
            body = orjson.dumps({"type": et, "customer_id": cid, "ts": iso(ts), **f})[1:]
            rows.append((ts, idx, seq, body))
    rows.sort()
    n_real = len(rows)
    lines: list[bytes] = [b'{"event_id":"e%09d",' % i + row[3] for i, row in enumerate(rows)]
    ts_list = [row[0] for row in rows]
    cust_of = [row[1] for row in rows]
    del rows

    # ---------------------------------------------------------------- bad input
    rb = random.Random(seed * 131 + 3)
    n_bad = int(round(bad_share * n_real))
    kinds = [k for k, _ in _BAD_KINDS]
    kcum = _cumulate([w for _, w in _BAD_KINDS])
    bad_counts = {k: 0 for k in kinds}
    inserts: list[tuple[int, int, bytes]] = []  # (insert before index, order, line)
    next_id = n_real
    for j in range(n_bad if n_real else 0):
        kind = kinds[min(len(kinds) - 1, bisect.bisect_right(kcum, rb.random() * kcum[-1]))]
        src = rb.randrange(n_real)
        if kind == "duplicate":
            delay = int(math.exp(rb.uniform(math.log(2 * SEC), math.log(6 * HOUR))))
            pos = bisect.bisect_right(ts_list, ts_list[src] + delay)
            pos = max(pos, src + 1)
            inserts.append((pos, j, lines[src]))
        elif kind == "late":
            obj = orjson.loads(lines[src])
            late_ts = ts_list[src] - int(rb.uniform(6 * MIN, 60 * MIN))
            if late_ts < start_ms:
                late_ts = ts_list[src] - 6 * MIN
            ev = {"event_id": f"e{next_id:09d}", "type": "page_view", "customer_id": obj["customer_id"],
                  "ts": iso(late_ts), "session_id": obj.get("session_id") or f"s{cust_of[src]:06d}late{j}",
                  "page": rb.choice(_PAGES)}
            next_id += 1
            inserts.append((src + 1, j, orjson.dumps(ev)))
        else:
            pos = rb.randrange(n_real + 1)
            line = lines[src]
            if kind == "truncated_json":
                out = line[: rb.randrange(5, len(line) - 1)]
            elif kind == "garbage_bytes":
                size = rb.randint(8, 120)
                out = bytes(rb.choice(b"abcdefXYZ{}[]:,\"0123456789 \x80\xff\xfe\xc3") for _ in range(size))
                out = out.replace(b"\n", b" ").replace(b"\r", b" ")
                if rb.random() < 0.5:
                    out = line[: rb.randrange(5, len(line) - 1)] + b"\xff\xfe" + out
                else:
                    out = b"\xff" + out  # never valid UTF-8
            else:
                obj = orjson.loads(line)
                obj["event_id"] = f"e{next_id:09d}"
                next_id += 1
                if kind == "missing_field":
                    required = ["event_id", "type", "customer_id", "ts"]
                    et = obj["type"]
                    if "session_id" in obj:
                        required.append("session_id")
                    if et in ("product_view",) + CART_ACTIVITY[:2]:
                        required.append("product_id")
                    if et == "add_to_cart":
                        required.append("price")
                    if "order_id" in obj:
                        required.append("order_id")
                    if "conversation_id" in obj:
                        required.append("conversation_id")
                    if et == "chat_message":
                        required += ["sender", "text"]
                    if et == "order_placed":
                        required += ["total", "promised_delivery_ts"]
                    del obj[rb.choice(required)]
                elif kind == "price_string":
                    obj["type"] = "add_to_cart"
                    obj.setdefault("session_id", f"s{cust_of[src]:06d}x")
                    obj.setdefault("product_id", cat.ids[cat.pick(rb)])
                    obj["price"] = f"{rb.uniform(1, 500):.2f}"
                    obj["quantity"] = 1
                elif kind == "quantity_zero":
                    obj["type"] = "add_to_cart"
                    obj.setdefault("session_id", f"s{cust_of[src]:06d}x")
                    obj.setdefault("product_id", cat.ids[cat.pick(rb)])
                    obj.setdefault("price", cat.price[cat.pick(rb)])
                    obj["quantity"] = 0
                elif kind == "ts_no_offset":
                    obj["ts"] = obj["ts"][:-1] if rb.random() < 0.6 else obj["ts"][:19]
                else:  # unknown_type
                    obj["type"] = rb.choice(_UNKNOWN_TYPES)
                out = orjson.dumps(obj)
            inserts.append((pos, j, out))
        bad_counts[kind] += 1
    inserts.sort(key=lambda x: (x[0], x[1]))

    with open(out_dir / "events.jsonl", "wb") as fh:
        k = 0
        buf: list[bytes] = []
        for i, line in enumerate(lines):
            while k < len(inserts) and inserts[k][0] <= i:
                buf.append(inserts[k][2])
                k += 1
            buf.append(line)
            if len(buf) >= 8192:
                fh.write(b"\n".join(buf) + b"\n")
                buf = []
        while k < len(inserts):
            buf.append(inserts[k][2])
            k += 1
        if buf:
            fh.write(b"\n".join(buf) + b"\n")
    for oid, cid, late, due in orders_pending:
        late = late or (due is not None and due <= last_event)
        truth_orders.extend(_line({"kind": "order", "order_id": oid, "customer_id": cid, "late": late}))
        n["orders"] += 1
        n["late"] += late
    with open(out_dir / "truth.jsonl", "wb") as fh:
        for group in (truth_customers, truth_carts, truth_orders, truth_convs):
            fh.write(group)

    n_bad_total = sum(bad_counts.values())
    return {
        "events": n_real + bad_counts["late"],
        "real_events": n_real,
        "lines": n_real + n_bad_total,
        "bad": bad_counts,
        "bad_lines": n_bad_total,
        "customers": customers,
        "days": days,
        "orders": n["orders"],
        "conversations": n["conversations"],
        "carts": n["carts"],
        "churned": n["churned"],
        "late_orders": n["late"],
        "abandoned_carts": n["abandoned"],
        "frustrated_conversations": n["frustrated"],
        "human_requests": n["human"],
        "start": iso(start_ms),
        "end": iso(end_ms),
    }
