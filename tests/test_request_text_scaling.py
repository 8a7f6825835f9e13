"""Forum-tag stripping takes time linear in the request, for any request.

"paid - paid - ..." once took 6.7 s at 28 KB and 24 s at 56 KB: every strip rescanned the rest.
Time is compared, never asserted in seconds: the same stripping on a request four times longer
must take about four times as long (linear: 4; quadratic: 16), measured as the best of a few
runs long enough to time.
"""

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imageedit_r1.request_text import clean_request

SIZE = 4096  # characters of the shorter request; the longer one is four times that
LINEAR_BOUND = 8.0  # between linear (4) and quadratic (16) growth for a 4x longer request


def _best_of(text: str, repeat: int, runs: int = 3) -> float:
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        for _ in range(repeat):
            clean_request(text)
        best = min(best, time.perf_counter() - started)
    return best


def growth(make, attempts: int = 3) -> float:
    """How much longer stripping a 4x longer request takes than the shorter one: the least of a
    few measurements, since another process can only slow a run down (a quadratic stripping
    never measures under the bound at these sizes; a linear one measures about 4)."""
    short, long = make(SIZE), make(4 * SIZE)
    repeat = max(1, round(0.02 / max(_best_of(short, 1), 1e-7)))  # about 20 ms for the shorter one
    ratios = []
    for _ in range(attempts):
        ratios.append(_best_of(long, repeat) / _best_of(short, repeat))
        if ratios[-1] < LINEAR_BOUND:
            break
    return min(ratios)


def repeated(unit: str, tail: str = ""):
    return lambda size: unit * (size // max(1, len(unit)) + 1) + tail


ADVERSARIAL = {
    "leading labels": repeated("paid - ", "x"),
    "leading labels with amounts": repeated("Paid $10 - ", "fix it"),
    "leading tags": repeated("[paid] ", "x"),
    "trailing tags": lambda size: "x " + repeated("(free) ")(size),
    "trailing tags with separators": lambda size: "fix it" + repeated(" - [paid $5]")(size),
    "an unclosed tag": lambda size: "[paid " + repeated("paid ", "x")(size),
    "many sentence ends": lambda size: repeated("a. ")(size) + "will tip!",
    "closing sentences": lambda size: "Fix it." + repeated(" Will tip!")(size),
    "open brackets": repeated("[", "paid]"),
    "labels and tags": repeated("paid - [free] ", "x (tip)"),
}


@pytest.mark.parametrize("make", ADVERSARIAL.values(), ids=ADVERSARIAL.keys())
def test_stripping_grows_linearly_on_adversarial_requests(make):
    assert growth(make) < LINEAR_BOUND


TOKENS = ["paid", "free", "tip", "will tip", "no ai", "$10", "10 usd", "[", "]", "(", ")", "{", "}", " ", " - ",
          ":", "|", ".", "!", "?", ",", "x", "Remove the car"]


@settings(max_examples=25, deadline=None)
@given(st.lists(st.sampled_from(TOKENS), min_size=1, max_size=8), st.sampled_from(["", "x", " [paid]", " Will tip!"]))
def test_stripping_grows_linearly_on_any_repeated_pattern(parts, tail):
    assert growth(repeated("".join(parts), tail)) < LINEAR_BOUND
