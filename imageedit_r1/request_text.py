"""Edit requests as people write them on forums: the tags around the request are not the request.

PSR requests come from r/PhotoshopRequest posts, whose titles carry the forum's tags: "[Paid $10]",
"[Specific]", "(Free)", "Paid - No AI", "[Creative] [$5]". They say how the poster pays or what
kind of work they want, never what to edit, and an agent that reads "[Paid $10] Remove the
watermark" may take "[Paid $10] Remove" for an unknown action. ``clean_request`` drops them:
bracketed tags made only of the forum's words (or an amount) at the start or the end, a leading
bare "Paid $10 -" / "Specific:" label, and a closing sentence made only of them ("Will tip!");
whitespace is collapsed. Everything else is kept:
a bracket holding anything but tag words ("[SALE]", "[A-0]") is part of the request.

One function, used wherever a request is read: the data loaders, the pipeline and the agents.
"""

from __future__ import annotations

import re

# The forum's tag words (flairs, payment, request kinds); an amount ("$10", "10 USD", "£5") also counts.
_WORDS = (
    r"paid|unpaid|free|specific|creative|serious|request|requests|tip|tips|tipping|will\s+tip|tipped|nsfw|"
    r"urgent|asap|solved|fun|help|quick|easy|simple|no\s+ai|ai\s+ok|ai\s+allowed|ai\s+welcome|ai|"
    r"photoshop|repost|psr|fixed\s+price|budget|reward|bounty"
)
_CURRENCY = r"usd|eur|gbp|dollars?|bucks"
_NUMBER = r"\d+(?:[.,]\d{1,2})?"
# A sum of money: "$10", "$ 10", "10$", "10 USD", "10usd" open a tag; after the opener an amount
# is "$10", "10$" or "10usd", and a currency word after a space is an item of its own.
_MONEY = rf"[$€£]\s*{_NUMBER}|{_NUMBER}\s*(?:[$€£]|{_CURRENCY})"
_AMOUNT = rf"[$€£]\s*{_NUMBER}|{_NUMBER}(?:[$€£]|{_CURRENCY})?"
# Every item ends where a word ends, and items are joined by a separator that cannot be read
# two ways: so a text splits into items in one way only, and a tag that fails to close costs
# time linear in its length ("[paid paid paid ... x" once took seconds per word added).
_END = r"(?!\w)"
_SEP = r"(?:\s*[-–—:/|,+&]\s*|\s+)"
# A tag opens with a tag word or a sum of money: "(2)" alone is a reference to a photo, kept.
_CONTENT = rf"(?:(?:{_WORDS}|{_CURRENCY}|{_MONEY}){_END})(?:{_SEP}(?:(?:{_WORDS}|{_CURRENCY}|{_AMOUNT}){_END}))*"
_TAG = rf"(?:\[\s*{_CONTENT}\s*\]|\(\s*{_CONTENT}\s*\)|\{{\s*{_CONTENT}\s*\}})"
_TAG_SEP = r"\s*(?:[-–—:|]\s*)?"
_LEADING_TAGS = re.compile(rf"^\s*(?:{_TAG}{_TAG_SEP})+", re.IGNORECASE)
# One tag at a time (``strip_forum_tags`` repeats): a search for a chain of tags before the end
# would rescan the chain from each of its tags when the text goes on after it.
_TRAILING_TAGS = re.compile(rf"{_TAG_SEP}{_TAG}\s*$", re.IGNORECASE)
# A closing sentence made only of tag words: "... a sunny day? Will tip!", "... the glare. Paid $5."
_TRAILING_SENTENCE = re.compile(rf"(?<=[.!?])\s+{_CONTENT}\s*[.!]*\s*$", re.IGNORECASE)
# A bare label only with a separator after it: "Paid $10 - remove ...", "Specific: ...";
# never "Free the bird from the cage".
_LEADING_LABEL = re.compile(
    rf"^\s*(?:paid|unpaid|free|specific|creative)(?:\s*[-–—]?\s*(?:{_AMOUNT}))?(?:\s*[-–—/]\s*(?:no\s+ai|ai\s+ok))?"
    r"\s*[-–—:|]\s+",
    re.IGNORECASE,
)


def strip_forum_tags(request: str) -> str:
    """``request`` without the forum tags at its start and end (see the module docstring)."""
    text = request
    while True:
        before = text
        text = _LEADING_TAGS.sub("", text)
        text = _LEADING_LABEL.sub("", text)
        text = _TRAILING_TAGS.sub("", text)
        text = _TRAILING_SENTENCE.sub("", text)
        if text == before:
            return text


def clean_request(request: str) -> str:
    """The request as an agent should read it: forum tags dropped, whitespace collapsed.

    A request that is nothing but tags is returned as it was (collapsed), so that the caller's
    own "empty request" check does not fire on a request that had words in it.
    """
    collapsed = " ".join(str(request).split())
    cleaned = " ".join(strip_forum_tags(collapsed).split())
    return cleaned or collapsed
