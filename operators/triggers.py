"""Older name of part of :mod:`operators.messages`, kept so that recovery snapshots written
before the move (which name classes by module) still load."""

from operators.messages import SCHEMA_VERSION, TRIGGER_TYPES, MARKETING, PRIORITIES, TIERS, Candidate, Notice, ProfileUpdate, Suppressed, default_class, priority, trigger_id  # noqa: F401
