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
# Each pattern is matched at a position of the text (the text is never cut and rescanned), so
# stripping costs time linear in the text, whatever it holds ("paid - paid - ..." once took
# seconds per kilobyte: every strip rescanned the whole rest).
_LEADING_TAGS = re.compile(rf"\s*(?:{_TAG}{_TAG_SEP})+", re.IGNORECASE)
_ONE_TAG = re.compile(_TAG, re.IGNORECASE)
# A closing sentence made only of tag words: "... a sunny day? Will tip!", "... the glare. Paid $5."
_CLOSING_SENTENCE = re.compile(rf"\s+{_CONTENT}\s*[.!]*\s*", re.IGNORECASE)
# A bare label only with a separator after it: "Paid $10 - remove ...", "Specific: ...";
# never "Free the bird from the cage".
_LEADING_LABEL = re.compile(
    rf"\s*(?:paid|unpaid|free|specific|creative)(?:\s*[-–—]?\s*(?:{_AMOUNT}))?(?:\s*[-–—/]\s*(?:no\s+ai|ai\s+ok))?"
    r"\s*[-–—:|]\s+",
    re.IGNORECASE,
)
_OPENING = {"]": "[", ")": "(", "}": "{"}
_SEPARATORS = "-–—:|"
_ROUNDS = 8  # stripping one end exposes tags at the other only when tags are all that is left


def _back_over(text: str, start: int, end: int, chars: str | None = None) -> int:
    """``end`` moved left over whitespace (or over ``chars``), not past ``start``."""
    while end > start and (text[end - 1].isspace() if chars is None else text[end - 1] in chars):
        end -= 1
    return end


def _trailing_tag(text: str, start: int, end: int) -> int | None:
    """Where the text ends without its last tag and the separator before it; None: no tag there."""
    close = _back_over(text, start, end)
    if close == start or text[close - 1] not in _OPENING:
        return None
    opening = text.rfind(_OPENING[text[close - 1]], start, close - 1)
    if opening < 0 or not _ONE_TAG.fullmatch(text, opening, close):
        return None
    cut = _back_over(text, start, opening)
    if cut > start and text[cut - 1] in _SEPARATORS:
        cut = _back_over(text, start, cut - 1)
    return cut


def _closing_sentence(text: str, start: int, end: int) -> int | None:
    """Where the text ends without a closing sentence of tag words (kept: the mark before it)."""
    tail = _back_over(text, start, _back_over(text, start, _back_over(text, start, end), ".!"))
    mark = tail - 1  # the last end of a sentence followed by a space, before the closing marks
    while mark > start and not (text[mark - 1] in ".!?" and text[mark].isspace()):
        mark -= 1
    if mark <= start or not _CLOSING_SENTENCE.fullmatch(text, mark, end):
        return None
    return mark


def strip_forum_tags(request: str) -> str:
    """``request`` without the forum tags at its start and end (see the module docstring)."""
    text, start, end = request, 0, len(request)
    for _ in range(_ROUNDS):
        before = (start, end)
        while match := _LEADING_TAGS.match(text, start, end) or _LEADING_LABEL.match(text, start, end):
            if match.end() == start:
                break
            start = match.end()
        while (cut := _trailing_tag(text, start, end)) is not None or \
                (cut := _closing_sentence(text, start, end)) is not None:
            end = cut
        if (start, end) == before:
            break
    return text[start:end]


def clean_request(request: str) -> str:
    """The request as an agent should read it: forum tags dropped, whitespace collapsed.

    A request that is nothing but tags is returned as it was (collapsed), so that the caller's
    own "empty request" check does not fire on a request that had words in it.
    """
    collapsed = " ".join(str(request).split())
    cleaned = " ".join(strip_forum_tags(collapsed).split())
    return cleaned or collapsed
