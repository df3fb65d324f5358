"""models.scaler.StandardScaler gives River's numbers exactly, on arrays."""

import copy
import pickle
import random

from hypothesis import given, settings, strategies as st
from river import preprocessing

from models.scaler import StandardScaler

KEYS = [f"f{i}" for i in range(40)]


def _rows(seed: int, n: int) -> list[dict]:
    rnd = random.Random(seed)
    rows = []
    for i in range(n):
        keys = KEYS if i % 5 else KEYS[:12] + KEYS[13:] + ["late"]  # another key order, a missing and a new key
        rows.append({k: rnd.choice([0.0, 1.0, rnd.gauss(3, 10), rnd.random(), 1e9]) for k in keys})
    return rows


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 120))
def test_same_numbers_as_river(seed, n):
    river_scaler, ours = preprocessing.StandardScaler(), StandardScaler()
    for x in _rows(seed, n):
        assert ours.transform_one(x) == river_scaler.transform_one(x)
        river_scaler.learn_one(x)
        ours.learn_one(x)
    assert dict(ours.counts) == dict(river_scaler.counts)
    assert dict(ours.means) == dict(river_scaler.means)
    assert dict(ours.vars) == dict(river_scaler.vars)


def test_constant_feature_scales_to_zero_and_state_pickles():
    s = StandardScaler()
    for v in (1.0, 2.0, 3.0):
        s.learn_one({"const": 5.0, "x": v})
    assert s.transform_one({"const": 5.0, "x": 2.0}) == {"const": 0.0, "x": 0.0}
    assert s.transform_one({}) == {}
    for twin in (pickle.loads(pickle.dumps(s)), copy.deepcopy(s)):
        assert twin.transform_one({"const": 1.0, "x": 4.0}) == s.transform_one({"const": 1.0, "x": 4.0})
    assert isinstance(s.clone(), StandardScaler) and not s.clone().counts
