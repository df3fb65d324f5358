"""The one table of input events (operators/event_table.py) and what reads it: the decoder, the
Kafka settings' family -> topic map (older per-topic names as aliases), the test helpers."""

from __future__ import annotations

import pytest
from helpers import at, ev

from config.settings import DEFAULT_TOPICS, SettingsError, load_settings
from operators.event_table import FAMILIES, FAMILY_OF, default_topics, family_of, required_fields
from operators.events import EVENT_TYPES, DeadLetter, decode


def test_every_type_has_one_family_and_families_with_a_topic_are_the_settings_map():
    assert set(FAMILY_OF) == EVENT_TYPES
    assert sum(len(f.types) for f in FAMILIES.values()) == len(EVENT_TYPES)  # no type in two families
    assert default_topics() == DEFAULT_TOPICS
    assert family_of("price_changed").key == "product_id" and family_of("wishlist_add") is None


def test_an_unknown_type_is_a_dead_letter_not_a_chat_event():
    out = decode(b'{"event_id": "1", "type": "wishlist_add", "customer_id": "c", "ts": "2026-01-01T00:00:00Z",'
                 b' "conversation_id": "x"}')
    assert isinstance(out, DeadLetter) and out.reason == "unknown_type"


@pytest.mark.parametrize("type", sorted(EVENT_TYPES))
def test_the_helpers_build_every_type_from_the_table(type):
    e = ev(type, at(0))
    assert e.type == type and all(f in e.data for f in required_fields(type))
    assert (e.customer_id == "") == (type in FAMILIES["catalog"].types)


def test_kafka_topics_map_defaults_aliases_and_unknown_families(monkeypatch):
    k = load_settings().kafka
    assert k.topics == DEFAULT_TOPICS and k.clickstream_topic == "crm.clickstream"
    k = load_settings(kafka={"topics": {"catalog": "shop.catalog"}, "orders_topic": "legacy.orders"}).kafka
    assert k.topics["catalog"] == "shop.catalog" and k.topics["orders"] == k.orders_topic == "legacy.orders"
    assert k.topics["chat"] == "crm.chat"  # a family left out keeps its default
    monkeypatch.setenv("CRM_KAFKA__TOPICS__CATALOG", "env.catalog")
    assert load_settings().kafka.topics["catalog"] == "env.catalog"
    with pytest.raises(SettingsError, match="unknown event family 'wishlist'"):
        load_settings(kafka={"topics": {"wishlist": "w"}})


def test_the_catalog_topic_is_read_only_when_a_rule_reads_it():
    assert "crm.catalog" not in load_settings().read_topics()
    on = load_settings(rules={"enabled": ["price_drop"]})
    assert on.read_topics() == ["crm.clickstream", "crm.orders", "crm.chat", "crm.profile", "crm.catalog"]
    off = load_settings(rules={"enabled": ["back_in_stock"]}, kafka={"topics": {"profile": ""}})
    assert "crm.profile" not in off.read_topics()
