"""Which trigger rules exist and which run: the entry point group ``crm_stream.rules`` names them
(``name = "package.module:Class"``, a :class:`operators.ruleset.Rule` subclass), the contract's
four and the catalogue's ``price_drop`` / ``back_in_stock`` (operators/watch.py, product-keyed) are built in, and ``rules.enabled`` in the settings picks which run, in which order."""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any

from config.settings import SettingsError
from operators.contract_rules import CONTRACT_RULES
from operators.ruleset import MARKETING, SERVICE, Rule
from operators.watch import CATALOG_RULE_CLASSES

GROUP = "crm_stream.rules"


def builtin_rules() -> dict[str, type]:
    return {r.name: r for r in (*CONTRACT_RULES, *CATALOG_RULE_CLASSES)}


def known_rules() -> dict[str, Any]:
    """Rule name -> its class, or the entry point that loads it (built-ins need no install)."""
    found: dict[str, Any] = {ep.name: ep for ep in entry_points(group=GROUP)}
    found.update(builtin_rules())
    return found


class RuleError(SettingsError):
    """A rule that cannot run: one line naming it."""


def load_rules(names: list[str], cfg: Any) -> tuple[Rule, ...]:
    """The enabled rules, built, in ``names`` order (which breaks ties between timers due at the
    same ms); :class:`RuleError` for an unknown name or one whose code fails to load."""
    known = known_rules()
    rules = []
    for name in names:
        if name not in known:
            raise RuleError(f"rules.enabled: unknown rule {name!r} (known: {', '.join(sorted(known))})")
        cls = known[name]
        try:
            cls = cls if isinstance(cls, type) else cls.load()
            rule = cls(cfg)
        except Exception as exc:
            raise RuleError(f"rule {name!r} failed to load: {type(exc).__name__}: {exc}") from None
        if rule.name != name or rule.policy_class not in (SERVICE, MARKETING):
            raise RuleError(f"rule {name!r}: its class says name={rule.name!r}, policy_class={rule.policy_class!r}")
        rules.append(rule)
    return tuple(rules)
