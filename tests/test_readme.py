"""The README stays true: every setting is in its configuration table."""

import re
from pathlib import Path

from config.settings import settings_table

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_every_setting_is_documented():
    missing = [env for env, _, _ in settings_table() if f"`{env}`" not in README]
    assert not missing, f"README configuration table lacks {missing}; paste `crm-stream settings`"


def test_readme_names_the_two_commands_and_the_contract():
    for needle in ("make demo", "make test", "CONTRACT.md", "crm-stream replay", "Scaling out"):
        assert needle in README


ROOT = Path(__file__).resolve().parents[1]


def test_the_contract_lives_in_the_repository_and_every_relative_link_resolves():
    """A clone has no ../shared: README, CONTRACT.md and the schemas cite the project's own CONTRACT.md."""
    assert (ROOT / "CONTRACT.md").is_file()
    assert "](CONTRACT.md)" in README
    for doc in ("README.md", "CONTRACT.md"):
        text = (ROOT / doc).read_text()
        assert "../shared/CONTRACT" not in text and "](../shared" not in text, doc  # data paths may be named
        for target in re.findall(r"\]\(([^)#\s]+)", text):
            if "://" not in target:
                assert (ROOT / target).exists(), f"{doc} links {target}, which is not in the repository"
    for schema in (ROOT / "config" / "schemas").glob("*.json"):
        assert "../shared" not in schema.read_text(), schema.name


def test_the_example_events_are_valid_and_decode():
    """The README's one example per input topic and its `identify`: valid under the schema and accepted
    by the decoder."""
    import json

    from jsonschema import Draft202012Validator

    from operators.events import Event, decode

    schema = Draft202012Validator(json.loads((ROOT / "config" / "schemas" / "event.schema.json").read_text()))
    section = README.split("## Sending events", 1)[1].split("\n## ", 1)[0]
    examples = re.findall(r"`(\{\"event_id\".*?\})`", section)
    assert len(examples) == 6  # one per input topic, and identify (any topic)
    for text in examples:
        assert schema.is_valid(json.loads(text)), text
        assert isinstance(decode(text.encode()), Event), text


def test_every_map_setting_is_named_where_maps_merging_is_explained():
    from config.settings import _leaves

    maps = [env for env, _, f in _leaves() if isinstance(f.get_default(call_default_factory=True), dict)]
    paragraph = README.split("**Maps merge, key by key.**", 1)[1].split("\n\n", 1)[0]
    assert maps and [env for env in maps if f"`{env}`" not in paragraph] == []
