"""Texts of the simulation: pages, search queries, chat messages (calm, angry, human requests),
bot and agent replies. Customer messages never contain a human-request word by accident."""

from __future__ import annotations

import random

HELP_PAGES = ("/help/delivery", "/help/returns", "/help/payment", "/help/account", "/help/contact",
               "/help/tracking", "/help/warranty", "/help/faq")
PAGES = ("/", "/deals", "/new", "/bestsellers", "/account", "/account/orders", "/wishlist", "/stores")
EXIT_QUERIES = ("how to cancel my order", "refund policy", "close account", "delete my account",
                 "cancel order", "how do i get a refund", "return policy", "unsubscribe newsletter",
                 "close my account", "cancel subscription", "refund status", "how to return an item")
FAILED_QUERIES = ("garden hose", "sofa bed", "lawn mower", "wedding dress", "xqzt", "aquarium pump",
                   "ski boots", "piano", "dog food", "asdf", "bike helmet 3000", "vaccum robot")
DAYNAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
AGENT_NAMES = ("Sam", "Lea", "Tom", "Nina", "Omar", "Julia", "Ben", "Maya", "Lukas", "Ines")

CALM_OPEN = ("Hi,", "Hello,", "Good morning,", "Hey there,", "Hi team,", "Hello there,", "Hi!", "")
CALM_CLOSE = ("Thanks!", "Thank you.", "Appreciate it.", "Thanks in advance.", "", "", "Cheers.",
               "Thanks a lot.")
CALM_BODY = {
    "late": (
        "my order {oid} was supposed to arrive on {day} but it hasn't come yet. Could you check the status?",
        "the {product} I ordered ({oid}) seems to be running late. Any update?",
        "just wondering where my parcel {oid} is, the tracking hasn't moved since {day}.",
        "could you tell me when {oid} will be delivered? It was promised for {day}.",
        "I'm waiting for the {product}, order {oid}. Is there a new delivery date?",
    ),
    "lost": (
        "the tracking for {oid} hasn't changed in days. Could it be lost?",
        "I never received order {oid} ({product}). What can we do?",
        "my parcel {oid} seems to be stuck somewhere. Can you look into it?",
    ),
    "return": (
        "I'd like to send back the {product} from order {oid}, it doesn't really suit me.",
        "how do I send back the {product}? Order {oid}.",
        "the {product} arrived with a small scratch. Can I get a replacement?",
        "I requested a refund for {oid}, could you confirm it went through?",
    ),
    "search": (
        "I can't find {thing} on your site, do you carry it?",
        "is {thing} available somewhere in your shop?",
        "the search doesn't show anything for {thing}. Do you sell it?",
    ),
    "question": (
        "does the {product} come with a warranty?",
        "is the {product} compatible with the {product2}?",
        "what is the delivery time for the {product}?",
        "can I pay the {product} in instalments?",
        "is the {product} available in another colour?",
        "do you offer gift wrapping for the {product}?",
    ),
    "delay": (
        "I got a note that {oid} is delayed. Do you know the new date?",
        "my order {oid} shows a delay. Will it still arrive this week?",
        "just saw the delay message for {oid}, what happened?",
    ),
}
CALM_FOLLOW = (
    "Ok, thanks for checking.", "That works for me.", "Great, thank you for the quick help.",
    "Sure, the order number is {oid}.", "Got it. Have a nice day!", "Could you also send me the tracking link?",
    "Perfect, thanks.", "Alright, I'll wait then.", "Makes sense, thank you.", "Good to know, thanks!",
    "No problem, I can wait a couple of days.", "Thanks, that answers my question.",
)
CALM_WAIT = ("Hello? Just checking if you got my message.", "Any news?", "No rush, just let me know.",
              "Still there?")
CALM_HUMAN = (
    "Could I speak to a human, please?", "Would it be possible to talk to an agent?",
    "Can I talk to a real person about this?", "Could you connect me with a representative?",
    "I'd like to speak with a supervisor if possible.", "Is there a human agent available?",
)

ANGRY_BODY = {
    "late": (
        "where is my order {oid}? it was due {day}",
        "the {product} is STILL not here, you promised {day}",
        "I paid for fast shipping and order {oid} is late again",
        "nobody tells me anything about {oid}, it was supposed to be here on {day}",
        "this is the {nth} time your delivery is late",
        "{oid} is days late and your tracking page says nothing",
    ),
    "lost": (
        "my parcel {oid} is LOST and nobody cares",
        "I never got the {product}, order {oid}, and I want my money back",
        "tracking for {oid} has been frozen for a week, where is my stuff",
        "you lost my order {oid}. how is that even possible",
    ),
    "return": (
        "the {product} arrived broken, order {oid}",
        "I sent the {product} back two weeks ago and still no refund",
        "your return process is a nightmare, order {oid}",
        "the {product} stopped working after two days",
    ),
    "search": (
        "your search is useless, I can't find {thing}",
        "why is it impossible to find {thing} on this site",
        "I searched for {thing} five times and got nothing",
    ),
    "question": (
        "I asked about the {product} yesterday and nobody answered",
        "why is the price of the {product} different at checkout",
        "the {product} page says in stock but I can't order it",
    ),
    "delay": (
        "ANOTHER delay on {oid}? seriously",
        "you just told me {oid} is delayed again. what is going on",
        "delayed? I needed the {product} for {day}",
    ),
}
ANGRY_PRE = ("Seriously", "Unbelievable", "What the hell", "Damn it", "Ugh", "Come on", "Wow",
              "This is ridiculous", "Are you kidding me", "WTF")
ANGRY_POST = ("Worst service ever", "I'm sick of this crap", "Absolutely useless",
               "Never ordering from you again", "I want my money back", "This is a joke",
               "Totally unacceptable", "What a damn mess", "I'm so done with this shop",
               "I'll leave a terrible review everywhere", "Pathetic", "Fix this NOW",
               "I'm going to cancel everything", "Bloody hell")
ANGRY_WAIT = ("hello???", "anyone there", "is anybody reading this", "still waiting...",
               "{n} minutes and no answer", "answer please!!", "HELLO", "seriously, no reply?",
               "this chat is a joke", "are you even there??")
ANGRY_FOLLOW = ("that doesn't help at all", "I don't want a voucher, I want my order",
                 "you said that last time", "so what now??", "that's not good enough",
                 "unbelievable. just unbelievable", "whatever", "why does this always happen to me",
                 "I've been a customer for years and this is how you treat me",
                 "just refund me", "I'm not waiting another week")
ANGRY_HUMAN = (
    "I want to talk to a real person", "get me a supervisor NOW", "I want an agent, not a bot",
    "put me through to a human!!!", "let me speak to your manager", "is there a real person there???",
    "I demand a representative", "give me a human right now", "I need to speak to a supervisor",
)
ANGRY_END = ("!!!", "!!", "???", "?!", "!!!!", "!", "?!?!")

BOT_OPEN = (
    "Hi, I'm Robin, the virtual assistant. Let me look into this for you.",
    "Thanks for reaching out! Give me a second to check.",
    "Hello! I'm the virtual assistant, I'll do my best to help.",
)
REPLIES = {  # topic -> replies by bot or agent
    "order": (
        "I found your order {oid}. The latest status is: {status}.",
        "I've contacted {carrier} and asked for an update on {oid}.",
        "I'm sorry about the trouble with {oid}. The new estimated delivery is {day}.",
        "I can offer you a {pct}% voucher for the inconvenience.",
        "I understand, I'm escalating {oid} to our delivery team right away.",
        "You can track your parcel any time under Account > Orders.",
        "I've opened an investigation with {carrier}; if the parcel doesn't show up we'll refund {oid}.",
    ),
    "return": (
        "I've sent you a prepaid return label by email.",
        "I'm sorry the {product} didn't work out. I've registered the return for {oid}.",
        "Your refund for {oid} is on its way; you'll see it in 3-5 business days.",
        "Could you send us a photo of the {product}? Then I can arrange a replacement.",
    ),
    "search": (
        "I'm sorry, we don't carry {thing} at the moment.",
        "Let me check our catalogue for {thing}... unfortunately nothing right now.",
        "We might get {thing} later this year; I can note your interest.",
    ),
    "question": (
        "Good question! The {product} comes with a 2-year warranty.",
        "Yes, the {product} works with the {product2}.",
        "The {product} usually ships within 1-2 business days.",
        "You can pay in 3 instalments at checkout for orders over 100 EUR.",
        "The {product} is available in black and silver.",
        "Gift wrapping is available at checkout for 3 EUR.",
    ),
}
TOPIC = {"late": "late", "lost": "lost", "delay": "delay", "return": "return", "failed_search": "search",
          "question": "question"}
CLOSING = ("Is there anything else I can help you with?", "Thanks for your patience, have a good day!",
            "Glad I could help.")
STATUSES = ("in transit", "at the local depot", "out for delivery", "awaiting carrier scan", "delayed")


def shout(rng: random.Random, text: str) -> str:
    """``text`` in capitals, with a word or two in capitals, or as it was."""
    u = rng.random()
    if u < 0.3:
        return text.upper()
    if u < 0.7:
        words = text.split(" ")
        for _ in range(rng.randint(1, 2)):
            i = rng.randrange(len(words))
            if len(words[i]) > 3:
                words[i] = words[i].upper()
        return " ".join(words)
    return text
