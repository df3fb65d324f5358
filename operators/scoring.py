"""Older name of part of :mod:`operators.messages`, kept so that recovery snapshots written
before the move (which name classes by module) still load."""

from operators.messages import Label, PairMsg, RecsEval, RecsUpdate, ScoreRequest, pair_messages  # noqa: F401
