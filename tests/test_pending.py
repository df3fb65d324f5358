"""Pending churn decisions packed one ``bytes`` each (operators/pending.py, issue 19): exact,
readable in both forms, portable across workers, and a customer resumed from a snapshot whose
decisions were tuples labels them exactly as before."""

from __future__ import annotations

import math
import pickle
import struct
from array import array

import pytest

from helpers import at, ev, ms_at
from operators import pending
from operators.customer import CustomerState
from operators.rules import RuleConfig

CFG = RuleConfig()


def bits(feats: dict) -> list:
    """Keys and the values' bit patterns (0.0 and -0.0 differ; NaN equals itself)."""
    return [(k, struct.pack("<d", v) if type(v) is float else v) for k, v in feats.items()]


FEATS = {"zero": 0.0, "nan": float("nan"), "inf": -math.inf, "tiny": 5e-324, "one": 1.0,
         **{f"f{i}": float(i % 3 == 0) * i / 7 for i in range(70)}}


def test_an_entry_gives_back_its_id_times_and_features_bit_for_bit():
    e = pending.make("u1|123|session_end", 123, FEATS, 456, "u1")
    assert type(e) is bytes and len(e) < 8 * len(FEATS)
    assert (pending.due(e), pending.decided(e), pending.key(e)) == (456, 123, (456, 123))
    assert pending.decision_id(e, "u1") == "u1|123|session_end"
    d, ts, feats, due = pending.unpack(e, "u1")
    assert (d, ts, due) == ("u1|123|session_end", 123, 456)
    assert bits(feats) == bits(FEATS)


def test_a_negative_zero_keeps_its_sign_in_the_tuple_form():
    feats = {**FEATS, "neg_zero": -0.0}
    e = pending.make("u1|1|x", 1, feats, 2, "u1")
    assert type(e) is tuple and bits(pending.unpack(e, "u1")[2]) == bits(feats)


@pytest.mark.parametrize("decision_id", ["other|123|x", "u1|124|x", "é|" * 200])
def test_an_id_not_of_the_usual_shape_is_kept_whole_or_the_decision_stays_a_tuple(decision_id):
    e = pending.make(decision_id, 123, {"a": 1.0}, 456, "u1")
    assert type(e) is (tuple if len(decision_id.encode()) > 255 else bytes)
    assert pending.unpack(e, "u1")[0] == pending.decision_id(e, "u1") == decision_id


def test_features_not_all_floats_stay_a_tuple_with_a_dict():
    e = pending.make("u1|1|x", 1, {"a": 1.0, "b": 2}, 9, "u1")
    assert e == ("u1|1|x", 1, {"a": 1.0, "b": 2}, 9)
    assert pending.unpack(e, "u1") == ("u1|1|x", 1, {"a": 1.0, "b": 2}, 9)
    assert pending.key(e) == (9, 1) and pending.due(e) == 9 and pending.decided(e) == 1


def test_a_guests_entry_keeps_its_id_under_the_customer_that_absorbs_it():
    e = pending.make("guest|5|inactive", 5, {"a": 0.5}, 10, "guest")
    moved = pending.rebase(e, "guest", "u1")
    assert pending.decision_id(moved, "u1") == "guest|5|inactive"
    assert pending.unpack(moved, "u1")[2] == {"a": 0.5}


def test_entries_are_portable_to_a_worker_with_other_layout_indexes(monkeypatch):
    e = pending.make("u1|1|x", 1, FEATS, 2, "u1")
    snap = pickle.dumps(pending.portable((e,)))
    monkeypatch.setattr(pending, "_TABLE", [pending.shared(("other",))])  # a fresh worker: another table
    monkeypatch.setattr(pending, "_INDEX", {("other",): 0})
    (back,) = pending.resume(pickle.loads(snap), "u1")
    assert back != e  # indexed again
    assert bits(pending.unpack(back, "u1")[2]) == bits(FEATS)
    monkeypatch.setattr(pending, "_TABLE", [pending.shared(("other",))])  # a full table: the tuple form, still exact
    monkeypatch.setattr(pending, "_INDEX", {("other",): 0})
    monkeypatch.setattr(pending, "MAX_LAYOUTS", 1)
    (full,) = pending.resume(pickle.loads(snap), "u2")
    assert type(full) is tuple and full[0] == "u2|1|x" and bits(pending.unpack(full, "u2")[2]) == bits(FEATS)


def test_entries_of_a_snapshot_from_before_packing_are_packed_on_resume():
    names = pending.shared(tuple(FEATS))
    old = (("u1|1|x", 1, (names, array("d", FEATS.values())), 5), ("u1|2|y", 2, {"a": 1.0}, 6),
           ("u1|3|z", 3, {"a": 1}, 7))
    new = pending.resume(old, "u1")
    assert [type(e) for e in new] == [bytes, bytes, tuple]
    assert [pending.unpack(e, "u1")[0] for e in new] == ["u1|1|x", "u1|2|y", "u1|3|z"]
    assert bits(pending.unpack(new[0], "u1")[2]) == bits(FEATS)


def test_a_customer_resumed_from_tuple_entries_labels_them_as_an_uninterrupted_run():
    def session(st, day):
        out = []
        for e in (ev("page_view", at(days=day), customer="c", session_id=f"s{day}"),
                  ev("product_view", at(1, days=day), customer="c", session_id=f"s{day}", product_id="p1")):
            out += st.process(e, CFG)[0]
        return out + st.advance(ms_at(days=day + 1), CFG)

    live = CustomerState("c", CFG.recs)
    for day in range(3):
        session(live, day)
    assert live.churn_pending and all(type(e) is bytes for e in live.churn_pending)
    old = pickle.loads(pickle.dumps(live))
    old.churn_pending = tuple(pending.unpack_packed(*p, "c") for p in pending.portable(old.churn_pending))
    resumed = pickle.loads(pickle.dumps(old))  # a snapshot with the tuple form, as before packing
    assert all(type(e) is bytes for e in resumed.churn_pending)
    a, b = session(live, 40), session(resumed, 40)
    labels = [o for o in a if type(o).__name__ == "Label"]
    assert labels and [(o.decision_id, bits(o.features), o.label) for o in labels] == \
        [(o.decision_id, bits(o.features), o.label) for o in b if type(o).__name__ == "Label"]
    assert len(a) == len(b)
