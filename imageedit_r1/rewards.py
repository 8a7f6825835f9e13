"""Rewards for the decomposition agent: format, and F1 over actions, subjects and goals.

Pure, deterministic, standard library only, and total: any response string yields every
component in [0, 1]; the returned keys are always ``overall, format, action, subject, goal``.

Matching rules
--------------
Normalisation (subjects and goals) reads an item's first 256 characters: Unicode NFKC, lower case, hyphens / underscores / slashes
become spaces, other punctuation is dropped, the articles "a", "an", "the" are dropped, and
each word loses a simple plural ending ("berries" -> "berry", "boxes" -> "box", "coats" -> "coat";
"glass", "bus" and words of three letters or fewer are kept). So "Copper-red" equals "copper red".

Actions: each label is mapped onto the closed taxonomy with ``canonical_action`` (synonyms such as
"recolor" or "change the color" become "Recoloring"); the action reward is the exact F1 between
the sets of canonical labels. A label outside the taxonomy only matches the identical label.

Subjects and goals: soft F1 with a one-to-one matching. Two items are similar in proportion to
the words they share, ignoring filler words ("or", "and", "of", "to", possessives, ...): the
similarity is the Dice coefficient of their content-word sets, 2|A∩B| / (|A|+|B|), and 1.0 for
items that normalise identically. An optimal one-to-one assignment between predicted and true
items maximises the summed similarity S (exact for up to ``_EXACT_LIMIT`` items on the smaller
side, greedy beyond); then precision = S/|P|, recall = S/|G| and F1 = 2S/(|P|+|G|).
"copper-red hair" vs "copper red" therefore earns 0.8, "red" vs "blue" earns 0.

Sets: predicted and true items are de-duplicated after normalisation, so repeating an item
cannot raise precision. Empty vs empty is a perfect 1.0 (nothing was to be found and nothing was
claimed); empty vs non-empty is 0.0.

Format: 1.0 when the response is exactly ``<think>…</think><action>[…]</action><subjects>[…]
</subjects><goals>[…]</goals>`` (see ``decomposition.parse_strict``), else 0.0.

Content of a response that fails the format check is still read with the tolerant parser, so a
near-miss earns partial content credit while losing the format reward; a list tag that is absent
scores 0 for its component, and a response with no recoverable decomposition scores 0 throughout.

``overall`` = Σ wₖ·componentₖ / Σ wₖ over the four components with non-negative weights
(default 0.25 each). Setting ``goal=0`` gives the paper's "without goal" ablation.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections.abc import Iterable, Mapping
from difflib import get_close_matches
from functools import lru_cache
from itertools import permutations
from math import perm

from imageedit_r1.decomposition import (
    ACTION,
    GOALS,
    MAX_LIST_ITEMS,
    SUBJECTS,
    Decomposition,
    DecompositionParseError,
    parse,
    parse_strict,
)
from imageedit_r1.taxonomy import canonical_action

COMPONENTS: tuple[str, ...] = ("format", "action", "subject", "goal")
KEYS: tuple[str, ...] = ("overall",) + COMPONENTS
DEFAULT_WEIGHTS: dict[str, float] = {"format": 0.25, "action": 0.25, "subject": 0.25, "goal": 0.25}

_ARTICLES = frozenset({"a", "an", "the"})
_FILLER = frozenset(
    {"or", "and", "of", "to", "with", "in", "on", "for", "into", "from", "at", "by", "as",
     "her", "his", "their", "its", "my", "your", "our", "this", "that", "these", "those", "some"}
)
_PLURAL_KEEP = ("ss", "us", "is", "ous")
_EXACT_LIMIT = 10  # optimal assignment up to this many items on the smaller side
_MAX_ITEMS = 64  # items beyond this still count against precision but are not matched
# An item is read up to this many characters: no subject, goal or action label is longer, and a
# degenerate one (a 6,000-character flood of a ligature that NFKC expands 18-fold) then costs a
# bounded time and a bounded cache entry.
_MAX_ITEM_CHARS = 256
_NON_WORD = re.compile(r"[^\w\s]")


# ----------------------------------------------------------------------------- normalisation


@lru_cache(maxsize=65536)
def _singular(word: str) -> str:
    if len(word) <= 3 or not word.endswith("s") or word.endswith(_PLURAL_KEEP):
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("ches", "shes", "xes", "zes", "sses")):
        return word[:-2]
    return word[:-1]


@lru_cache(maxsize=262144)
def normalize(text: str) -> tuple[str, ...]:
    """Words of ``text`` after the normalisation rules in the module docstring."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = text.replace("-", " ").replace("_", " ").replace("/", " ")
    text = _NON_WORD.sub(" ", text)
    return tuple(_singular(word) for word in text.split() if word not in _ARTICLES)


class _Item:
    """A normalised list item: its identity key and its content-word set."""

    __slots__ = ("key", "words")

    def __init__(self, words: tuple[str, ...]) -> None:
        self.key = " ".join(words)
        content = frozenset(w for w in words if w not in _FILLER)
        self.words = content or frozenset(words)


@lru_cache(maxsize=262144)
def _item(text: str) -> _Item | None:
    words = normalize(text)
    return _Item(words) if words else None


def _items(values: Iterable[str]) -> list[_Item]:
    seen: set[str] = set()
    out: list[_Item] = []
    for value in values:
        item = _item(value[:_MAX_ITEM_CHARS]) if isinstance(value, str) else None
        if item is not None and item.key not in seen:
            seen.add(item.key)
            out.append(item)
    return out


def _similarity(a: _Item, b: _Item) -> float:
    if a.key == b.key:
        return 1.0
    common = len(a.words & b.words)
    return 2.0 * common / (len(a.words) + len(b.words)) if common else 0.0


# ----------------------------------------------------------------------------- matching


def _best_assignment(sim: list[list[float]]) -> float:
    """Maximum total similarity of a one-to-one matching between rows and columns.

    Greedy first; when its total reaches the upper bound min(Σ row maxima, Σ column maxima) it
    is optimal and we stop (the usual case). Otherwise an exact search: every assignment for
    small matrices, a DP over column subsets up to ``_EXACT_LIMIT`` columns, greedy beyond.
    """
    pairs = sorted(((value, i, j) for i, row in enumerate(sim) for j, value in enumerate(row) if value > 0.0), reverse=True)
    if not pairs:
        return 0.0
    used_rows: set[int] = set()
    used_cols: set[int] = set()
    greedy = 0.0
    row_max: dict[int, float] = {}
    col_max: dict[int, float] = {}
    for value, i, j in pairs:
        row_max.setdefault(i, value)
        col_max.setdefault(j, value)
        if i not in used_rows and j not in used_cols:
            used_rows.add(i)
            used_cols.add(j)
            greedy += value
    if greedy >= min(sum(row_max.values()), sum(col_max.values())) - 1e-12:
        return greedy
    rows, cols = sorted(row_max), sorted(col_max)
    matrix = [[sim[i][j] for j in cols] for i in rows]
    if len(rows) < len(cols):
        matrix = [list(column) for column in zip(*matrix, strict=True)]
    n_rows, n_cols = len(matrix), len(matrix[0])
    if perm(n_rows, n_cols) <= 720:
        return max(
            sum(matrix[r][c] for c, r in enumerate(assignment)) for assignment in permutations(range(n_rows), n_cols)
        )
    if n_cols > _EXACT_LIMIT:
        return greedy
    best = {0: 0.0}  # best[mask] = best sum using exactly the columns in mask
    for row in matrix:
        nxt = dict(best)
        for mask, value in best.items():
            for j in range(n_cols):
                if not mask & (1 << j) and row[j] > 0.0:
                    key = mask | (1 << j)
                    if value + row[j] > nxt.get(key, -1.0):
                        nxt[key] = value + row[j]
        best = nxt
    return max(best.values())


def _soft_f1(predicted: list[_Item], truth: list[_Item]) -> float:
    if not predicted and not truth:
        return 1.0
    if not predicted or not truth:
        return 0.0
    truth_keys = {item.key for item in truth}
    if len(predicted) == len(truth) and all(item.key in truth_keys for item in predicted):
        return 1.0
    sim = [[_similarity(p, t) for t in truth[:_MAX_ITEMS]] for p in predicted[:_MAX_ITEMS]]
    matched = _best_assignment(sim)
    return min(1.0, 2.0 * matched / (len(predicted) + len(truth)))


def _set_f1(predicted: set[str], truth: set[str]) -> float:
    if not predicted and not truth:
        return 1.0
    if not predicted or not truth:
        return 0.0
    return 2.0 * len(predicted & truth) / (len(predicted) + len(truth))


def _action_set(labels: Iterable[str]) -> set[str]:
    return {label for label in (canonical_action(x[:_MAX_ITEM_CHARS]) for x in labels if isinstance(x, str)) if label}


# ----------------------------------------------------------------------------- public F1s


def action_f1(predicted: Iterable[str], truth: Iterable[str]) -> float:
    """Exact F1 between the sets of canonical taxonomy labels."""
    return _set_f1(_action_set(predicted), _action_set(truth))


def subject_f1(predicted: Iterable[str], truth: Iterable[str]) -> float:
    """Soft one-to-one F1 between normalised subject phrases."""
    return _soft_f1(_items(predicted), _items(truth))


def goal_f1(predicted: Iterable[str], truth: Iterable[str]) -> float:
    """Soft one-to-one F1 between normalised goal phrases."""
    return _soft_f1(_items(predicted), _items(truth))


def format_reward(response: str) -> float:
    """1.0 when ``response`` is exactly in the trained tag format, else 0.0."""
    return 1.0 if parse_strict(response) is not None else 0.0


# ----------------------------------------------------------------------------- ground truth


class _Truth:
    __slots__ = ("actions", "subjects", "goals")

    def __init__(self, decomposition: Decomposition) -> None:
        self.actions = _action_set(decomposition.actions)
        self.subjects = _items(decomposition.subjects)
        self.goals = _items(decomposition.goals)


@lru_cache(maxsize=65536)
def _truth_from_text(text: str) -> _Truth:
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            data = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise ValueError(f"ground truth is not valid JSON: {exc}: {text[:200]!r}") from exc
        return _Truth(Decomposition.from_dict(data))
    strict = parse_strict(stripped)
    if strict is not None:
        return _Truth(strict)
    raise ValueError(
        "ground truth must be a JSON object with actions/subjects/goals (or a dict, or a response in "
        f"the tag format); got {text[:200]!r}"
    )


def _truth(ground_truth: str | Mapping) -> _Truth:
    if isinstance(ground_truth, Mapping):
        return _truth_from_text(json.dumps(dict(ground_truth), sort_keys=True, ensure_ascii=False))
    if isinstance(ground_truth, (bytes, bytearray)):
        ground_truth = ground_truth.decode("utf-8")
    if not isinstance(ground_truth, str):
        raise ValueError(f"ground truth must be a JSON string or a dict, got {type(ground_truth).__name__}")
    return _truth_from_text(ground_truth)


# ----------------------------------------------------------------------------- score


def resolve_weights(weights: Mapping[str, float] | None = None) -> dict[str, float]:
    """The component weights: ``DEFAULT_WEIGHTS`` overridden by ``weights``.

    The one validation every trainer path uses (EasyR1's reward file, verl's ``pkg://`` reward
    and reward manager, TRL's reward functions, the recipes' preflight). Raises ``ValueError``,
    naming the fix, for an unknown name (with the name you likely meant), a value that is not a
    finite number (NaN, Infinity, text, a bool), a negative value, or all weights zero.
    """
    merged = dict(DEFAULT_WEIGHTS)
    if weights:
        unknown = sorted(set(weights) - set(COMPONENTS))
        if unknown:
            hints = [f"{name!r} (did you mean {close[0]!r}?)" if (close := get_close_matches(str(name), COMPONENTS, 1))
                     else repr(name) for name in unknown]
            raise ValueError(f"unknown reward weight {', '.join(hints)}: the weights are {', '.join(COMPONENTS)}")
        for name, value in weights.items():
            merged[name] = _weight_value(name, value)
    total = sum(merged.values())
    if total <= 0:
        raise ValueError(f"reward weights are all zero ({merged}): give at least one component a positive weight")
    if not math.isfinite(total):  # finite weights whose sum overflows make every overall NaN, then 0
        raise ValueError(f"reward weights {merged} overflow when summed: they are relative, use values such as 0.25")
    return merged


def _weight_value(name: str, value) -> float:
    if isinstance(value, bool):
        raise ValueError(f"reward weight {name}={value!r} must be a number, not a bool")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"reward weight {name}={value!r} is not a number") from None
    if not math.isfinite(number):
        raise ValueError(f"reward weight {name}={value!r} must be finite (NaN and Infinity make every score NaN or 0)")
    if number < 0:
        raise ValueError(f"reward weight {name}={value!r} must be non-negative")
    return number


_DEFAULT_RESOLVED = resolve_weights(None)


@lru_cache(maxsize=64)
def _resolved(items: tuple[tuple[str, str, float], ...]) -> dict[str, float]:
    # Batch callers pass the same weights for thousands of responses: validate them once.
    return resolve_weights({name: value for name, _, value in items})


def _weights_once(weights: Mapping[str, float]) -> dict[str, float]:
    try:
        # Each value's type is part of the key: False == 0 and hash alike, but only 0 is a weight.
        key = tuple(sorted((name, type(value).__name__, value) for name, value in weights.items()))
        hash(key)
    except TypeError:  # an unhashable or unsortable value: validate directly, for its clear error
        return resolve_weights(weights)
    return _resolved(key)


def _content(response: str) -> tuple[Decomposition | None, tuple[str, ...], bool]:
    """(decomposition or None, list tags missing, whether the strict format holds)."""
    try:
        result = parse(response)  # tries the strict format first; no repairs means it held
    except DecompositionParseError:
        return None, (), False
    return result.decomposition, result.missing, not result.repairs


def score(
    response: str, ground_truth: str | Mapping, weights: Mapping[str, float] | None = None
) -> dict[str, float]:
    """Score one response against its ground truth; see the module docstring for every rule.

    Raises ``ValueError`` only for a malformed ground truth or weights (a data or config bug);
    never for anything in ``response``.
    """
    resolved = _DEFAULT_RESOLVED if weights is None else _weights_once(weights)
    truth = _truth(ground_truth)
    components = dict.fromkeys(COMPONENTS, 0.0)
    if isinstance(response, str):
        try:
            components = _score_response(response, truth)
        except (ValueError, TypeError, RecursionError, MemoryError):
            pass  # a response the parser cannot survive scores 0; it never stops training
    total = sum(resolved.values())
    overall = sum(resolved[name] * components[name] for name in COMPONENTS) / total
    return {"overall": min(1.0, max(0.0, overall)), **components}


def _score_response(response: str, truth: _Truth) -> dict[str, float]:
    decomposition, missing, strict_ok = _content(response)
    if decomposition is None:
        return dict.fromkeys(COMPONENTS, 0.0)
    actions, subjects, goals = decomposition.actions, decomposition.subjects, decomposition.goals
    return {
        "format": 1.0 if strict_ok else 0.0,
        "action": 0.0 if _unscorable(ACTION, actions, missing) else _set_f1(_action_set(actions), truth.actions),
        "subject": 0.0 if _unscorable(SUBJECTS, subjects, missing) else _soft_f1(_items(subjects), truth.subjects),
        "goal": 0.0 if _unscorable(GOALS, goals, missing) else _soft_f1(_items(goals), truth.goals),
    }


def _unscorable(tag: str, items: list[str], missing: tuple[str, ...]) -> bool:
    return tag in missing or len(items) > MAX_LIST_ITEMS


def score_batch(
    responses: Iterable[str], ground_truths: Iterable[str | Mapping], weights: Mapping[str, float] | None = None
) -> list[dict[str, float]]:
    resolved = resolve_weights(weights)
    return [score(r, g, resolved) for r, g in zip(responses, ground_truths, strict=True)]
