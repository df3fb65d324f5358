"""Which trigger rules exist and which run: the entry point group ``crm_stream.rules`` names them
(``name = "package.module:Class"``, a :class:`operators.ruleset.Rule` subclass), the contract's
four and the catalogue's ``price_drop`` / ``back_in_stock`` (operators/watch.py, product-keyed)
are built in, the catalogue's other flows and a shop's declared ones come from the settings
(``rules.declared``, :mod:`operators.declared`), and ``rules.enabled`` picks which run, in which
order. A declared rule named like a hand-written one is refused (one line)."""

from __future__ import annotations

import logging
from importlib.metadata import entry_points
from typing import Any

from config.settings import SettingsError, bad_setting
from operators.contract_rules import CONTRACT_RULES
from operators.declared import DefinitionError, declared_rules
from operators.ruleset import MARKETING, SERVICE, Rule
from operators.watch import CATALOG_RULE_CLASSES

GROUP = "crm_stream.rules"
log = logging.getLogger("crm.rules")


def builtin_rules() -> dict[str, type]:
    return {r.name: r for r in (*CONTRACT_RULES, *CATALOG_RULE_CLASSES)}


def known_rules(cfg: Any = None) -> dict[str, Any]:
    """Rule name -> its class, the entry point that loads it (built-ins need no install), or the
    factory of a declared rule (``cfg.definitions``)."""
    found: dict[str, Any] = {ep.name: ep for ep in entry_points(group=GROUP)}
    found.update(builtin_rules())
    declared = declared_rules(cfg)
    clash = sorted(set(found) & set(getattr(cfg, "declared_names", ())))
    if clash:
        raise bad_setting(DECLARED, f"rule {clash[0]!r} is already a hand-written rule (pick another name)", cls=RuleError)
    for name, factory in declared.items():  # a shop's package may replace a catalogue flow by entry point
        found.setdefault(name, factory)
    return found


class RuleError(SettingsError):
    """A rule that cannot run: one line naming it (and the setting, ``rules.enabled`` or
    ``rules.declared``: :func:`config.settings.relocate` names it as the user set it)."""


ENABLED, DECLARED = ("rules", "enabled"), ("rules", "declared")


def load_rules(names: list[str], cfg: Any) -> tuple[Rule, ...]:
    """The enabled rules, built, in ``names`` order (which breaks ties between timers due at the
    same ms); :class:`RuleError` for an unknown name or one whose code fails to load."""
    known = known_rules(cfg)
    rules = []
    for name in names:
        if name not in known:
            raise bad_setting(ENABLED, f"unknown rule {name!r} (known: {', '.join(sorted(known))})", cls=RuleError)
        cls = known[name]
        try:
            cls = cls if callable(cls) else cls.load()  # a class, a declared rule's factory, or an entry point
            rule = cls(cfg)
        except DefinitionError as exc:
            raise bad_setting(DECLARED, str(exc), cls=RuleError) from None
        except Exception as exc:
            raise bad_setting(ENABLED, f"rule {name!r} failed to load: {type(exc).__name__}: {exc}",
                              cls=RuleError) from None
        if rule.name != name or rule.policy_class not in (SERVICE, MARKETING):
            raise bad_setting(ENABLED, f"rule {name!r}: its class says name={rule.name!r}, "
                              f"policy_class={rule.policy_class!r}", cls=RuleError)
        for warning in getattr(rule, "warnings", ()):  # a declared rule reading fields outside the contract
            log.warning(warning)
        rules.append(rule)
    return tuple(rules)
