"""The README stays true: every setting is in its configuration table."""

from pathlib import Path

from config.settings import settings_table

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_every_setting_is_documented():
    missing = [env for env, _, _ in settings_table() if f"`{env}`" not in README]
    assert not missing, f"README configuration table lacks {missing}; paste `crm-stream settings`"


def test_readme_names_the_two_commands_and_the_contract():
    for needle in ("make demo", "make test", "CONTRACT.md", "crm-stream replay", "Scaling out"):
        assert needle in README
