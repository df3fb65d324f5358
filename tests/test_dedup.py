"""SeenIds: the packed duplicate window behaves like the dict of ids it replaced."""

from __future__ import annotations

import pickle

from hypothesis import given, strategies as st

from operators.dedup import SeenIds


def test_get_add_prune_and_pickle():
    seen = SeenIds()
    assert seen.get("e1") is None and len(seen) == 0
    seen.add("e1", 1_000)
    seen.add("e2", -5)
    seen.add("e1", 2_000)  # seen again later: the latest ts counts, as a dict would keep it
    assert seen.get("e1") == 2_000 and seen.get("e2") == -5 and seen.get("e3") is None
    seen.prune(1_500)
    assert len(seen) == 1 and seen.get("e1") == 2_000 and seen.get("e2") is None
    back = pickle.loads(pickle.dumps(seen))
    assert back.get("e1") == 2_000 and len(back) == 1


@given(st.lists(st.tuples(st.text(min_size=1, max_size=12), st.integers(-(1 << 50), 1 << 50)), max_size=60),
       st.integers(-(1 << 50), 1 << 50))
def test_same_answers_as_a_dict(ops, horizon):
    seen, model = SeenIds(), {}
    for n, (event_id, ts) in enumerate(ops):
        assert seen.get(event_id) == model.get(event_id)
        if n % 2:  # the engine's path: look up once, then put where it looked
            key, where, seen_ts = seen.lookup(event_id)
            assert seen_ts == model.get(event_id)
            seen.put(key, where, ts)
        else:
            seen.add(event_id, ts)
        model[event_id] = ts
    seen.prune(horizon + 1)
    seen.prune(horizon)  # nothing more to drop: the blob stays as it is
    # a dict pruned by ts, where an id keeps only its latest ts
    model = {e: t for e, t in model.items() if t >= horizon + 1}
    for event_id, _ in ops:
        assert seen.get(event_id) == model.get(event_id)


def test_the_shared_empty_mapping_refuses_writes_and_survives_pickling():
    from operators.customer import EMPTY, CustomerState

    st = CustomerState("c1")
    assert st.cart is EMPTY and st.convs is EMPTY and st.orders is EMPTY
    for write in (lambda: EMPTY.__setitem__("p", 1), EMPTY.clear, lambda: EMPTY.update(a=1),
                  lambda: EMPTY.setdefault("p", 1), lambda: EMPTY.pop("p", None)):
        try:
            write()
        except TypeError:
            pass
        else:
            raise AssertionError("the shared empty mapping took a write")
    assert pickle.loads(pickle.dumps(st)).cart is EMPTY and len(EMPTY) == 0
