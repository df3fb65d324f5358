"""Escalation (a), "asks for a human" (issue 13, section 5): negation scope and compound nouns, in
English, French, Spanish, German and Portuguese, with the settings' lists still in charge."""

from __future__ import annotations

import pytest

from config.settings import Settings
from operators.customer import CustomerState
from operators.events import decode
from operators.rules import RuleConfig
from operators.text import HumanRequest

HUMAN = RuleConfig().human

ASKS = [
    # the issue's
    "can I speak with a person", "operator", "Je veux parler à un conseiller", "Quiero hablar con un agente",
    "Ich möchte mit einem Mitarbeiter sprechen", "Quero falar com um atendente",
    # beyond them
    "OPERATOR!!!", "Can I talk to someone please?", "is there a live person I can chat with",
    "I need a human", "No, I want a human", "I want an agent, not a bot", "not the bot but a real person",
    "Why can't I talk to a human?", "isn't there a human?", "the delivery agent was rude, get me a manager",
    "I don't know. Just give me an agent", "Passez-moi un opérateur", "je voudrais parler à quelqu’un",
    "¿Puedo hablar con una persona?", "necesito un asesor YA", "¿No hay un agente disponible?",
    "Kann ich bitte mit einem Menschen sprechen?", "ich will einen echten Menschen", "Ich will mit jemandem reden",
    "Preciso falar com alguém", "quero atendimento humano", "Não quero o robô, quero um humano",
    "put me through to your supervisor", "REPRESENTATIVE", "je veux un humain",
]

DOES_NOT_ASK = [
    # the issue's
    "No need for an agent", "the delivery agent", "my password manager crashed",
    # negation
    "I don't need an agent, thanks", "no agent please", "I do not want to talk to a human", "never mind the operator",
    "an agent is not needed", "agent? no thanks", "je n'ai pas besoin d'un conseiller", "sans conseiller merci",
    "no necesito un agente", "No quiero hablar con un humano", "Ich brauche keinen Kundenberater",
    "Ich muss nicht mit einem Mitarbeiter sprechen", "Não preciso de atendente", "nao quero falar com alguem",
    # compound nouns
    "the shipping agent left it at the door", "my travel agent booked it", "The courier agent called",
    "your user agent string is wrong", "task manager shows the app frozen", "it's in the download manager",
    "human resources sent me a letter", "must be a human error", "l'agent de livraison est passé",
    "el agente de entrega no vino", "o agente de viagens", "erreur humaine", "error humano",
    "my mobile operator blocks SMS", "the tour operator cancelled",
    # no request at all
    "where is my parcel?", "the manga arrived", "my agenda is full", "humanity", "agentic workflows",
    "Mensch, das dauert!", "viele Menschen warten", "una persona me dijo que", "uma pessoa entregou",
]


@pytest.mark.parametrize("text", ASKS)
def test_asks_for_a_human(text):
    assert HUMAN(text), HUMAN.find(text)


@pytest.mark.parametrize("text", DOES_NOT_ASK)
def test_does_not_ask_for_a_human(text):
    assert not HUMAN(text), HUMAN.find(text)


def test_settings_still_override():
    s = Settings(escalation={"human_words": ["bitte Mensch"], "human_negations": [], "human_compounds": []})
    h = RuleConfig(s).human
    assert h("bitte Mensch") and not h("agent") and not h("operator")
    plain = RuleConfig(Settings(escalation={"human_negations": [], "human_compounds": []})).human
    assert plain("No need for an agent") and plain("the delivery agent")  # the rules are the lists


def test_the_matcher_pickles():
    import pickle

    again = pickle.loads(pickle.dumps(HUMAN))
    assert isinstance(again, HumanRequest) and again("operator") and not again("no need for an agent")


def _escalations(texts: list[str]) -> list:
    cfg = RuleConfig()
    state = CustomerState("c1")
    out = []
    for i, text in enumerate(texts):
        raw = ('{"event_id":"m%d","type":"chat_message","customer_id":"c1","ts":"2026-11-23T10:%02d:00Z",'
               '"conversation_id":"k","sender":"%s","text":"%s"}' % (i, i, "customer" if i % 2 == 0 else "agent",
                                                                     text)).encode()
        res, _ = state.process(decode(raw), cfg)
        out += [r.candidate for r in res if getattr(r, "candidate", None) is not None
                and r.candidate.type == "escalation" and "human_requested" in r.candidate.reasons]
    return out


def test_the_state_machine_escalates_only_real_requests():
    assert _escalations(["No need for an agent", "ok", "the delivery agent was late", "ok",
                         "my password manager is fine"]) == []
    [c] = _escalations(["No need for an agent", "ok", "Puis-je parler à un conseiller ?"])
    assert c.reasons == ["human_requested"]
