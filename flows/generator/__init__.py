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
replay measures an uplift over the holdout group. Taste multiplies popularity (draws by
rejection), so sales stay Zipf-skewed while a customer's next items resemble their previous ones.

Every flow of the trigger catalogue (issue 14) occurs: repeated views without a cart,
deliveries followed by nothing or a return, customers away for weeks after their last order
(some existing customers' last order before the start is in the log, as a shop's backfill, and
some of them come back late), agent replies past the support SLA and chats closed unanswered or
without csat, and the shop's ``crm.catalog`` events (``market``: price changes and sell-outs,
keyed by ``product_id``, no ``customer_id``) with views and carts at the price of the moment.
``catalog=False`` (``--no-catalog``): static prices, always in stock, no catalog events.

Output (see CONTRACT.md section 8):

* ``events.jsonl``: one event per line, sorted by ``ts`` (stable; bad lines only from customer
  events), plus a ``bad_share`` of
  extra deliberately bad lines (malformed JSON, garbage bytes, missing fields, wrong types,
  exact duplicates re-sent later, late out-of-order ``page_view`` events). Bad lines never
  replace real events, so the truth stays exact.
* ``truth.ndjson``: the hidden truth, one object a line with a ``kind``: ``customer``,
  ``cart``, ``order``, ``conversation``. Cart, order and ``human_requested`` truths are
  recomputed from the events actually emitted, with the contract's definitions.

Determinism: only ``random.Random`` instances seeded from ``seed``; no wall clock, no hash()
or set ordering. The same arguments give byte-identical files.

Modules: ``timefmt`` (units, ISO text), ``catalogue``, ``market`` (prices and stock over time),
``customer`` (a life; with ``taste``, ``consent``, ``sessions``, ``orders``, ``chats`` and their
``texts``), ``truth`` (the oracle functions), ``badinput``, ``writer`` (``generate``).
"""

from flows.generator.catalogue import Catalogue, catalogue
from flows.generator.timefmt import iso
from flows.generator.truth import HUMAN_RE, compute_cart_truth, compute_order_truth
from flows.generator.writer import generate

__all__ = ["generate", "catalogue", "Catalogue", "compute_cart_truth", "compute_order_truth", "HUMAN_RE", "iso"]
