"""flows.state_codec: a customer state's snapshot bytes (issue 19, memory at rest and recovery size)."""

from __future__ import annotations

import pickle

import pytest
import zstandard

from flows import state_codec


def _states(n: int = 200) -> list:
    import tempfile
    from pathlib import Path

    from config.settings import load_settings
    from flows.scale import replay_states, sparse_log
    from operators.rules import RuleConfig

    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "log.jsonl"
        sparse_log(n, log, 1.0, seed=42)  # another seed than the dictionary's samples
        return list(replay_states(log, RuleConfig(load_settings()))[0].values())


def test_states_round_trip_at_under_half_their_pickle_and_plain_pickles_still_load():
    states = _states()
    plain = [pickle.dumps(s, protocol=pickle.HIGHEST_PROTOCOL) for s in states]
    packed = [state_codec.dumps(s) for s in states]
    again = lambda obj: pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)  # noqa: E731
    # the same state back (compared as an unpickled copy pickles again: sharing differs from the original's)
    assert [again(state_codec.loads(b)) for b in packed] == [again(pickle.loads(b)) for b in plain]
    assert sum(map(len, packed)) < sum(map(len, plain)) / 2
    assert again(state_codec.loads(plain[0])) == again(pickle.loads(plain[0]))
    # every frame names the dictionary it needs: the one shipped under DICT_ID
    assert {zstandard.get_frame_parameters(b).dict_id for b in packed} == {state_codec.DICT_ID}


def test_the_shipped_dictionary_is_the_one_its_id_says_and_an_unknown_one_is_refused():
    zdict = zstandard.ZstdCompressionDict(state_codec._DICTS[state_codec.DICT_ID].read_bytes())
    assert zdict.dict_id() == state_codec.DICT_ID
    other = zstandard.train_dictionary(4096, [pickle.dumps(s) for s in _states(300)], dict_id=999)
    foreign = zstandard.ZstdCompressor(dict_data=other).compress(pickle.dumps({"a": 1}))
    with pytest.raises(KeyError):
        state_codec.loads(foreign)
