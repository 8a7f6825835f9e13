"""What the offline stand-ins answer: worked out from what they are given, never a fixed reply.

``python -m imageedit_r1.testing serve`` answers every agent's prompt with these, so an offline run
shows what a real one would, in kind:

- the decomposition and sequencing agents split the request into its operations by rule
  (``imageedit_r1.agents.rule_based``): "remove the car and recolor the coat" is two actions, two
  subjects and a two-step plan;
- the teacher labels a request with the same rule;
- the judge and the verifier score from what they can measure between the ORIGINAL and the EDITED
  image: how much of it changed (fulfillment, preservation) and how much rougher it became
  (quality). The unedited image scores 6, noise 4, a local edit up to 10;
- the image editor (``/v1/images/edits``) edits the middle of the image as the prompt says: a named
  colour tints it, a removal fills it from its surroundings, anything else raises its contrast.

Answers are deterministic, so a repeated run gets the same ones. They prove the plumbing and the
parsers, not the quality of any model.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image, ImageChops, ImageDraw, ImageEnhance, ImageFilter, ImageStat

from imageedit_r1.agents.rule_based import keyword_operations
from imageedit_r1.decomposition import Decomposition
from imageedit_r1.taxonomy import leading_action

# Words that open a phrase without naming the thing edited.
_DETERMINERS = re.compile(
    r"^(?:(?:the|a|an|her|his|its|their|this|that|these|those|my|your|our|some|possibly|maybe|also|all|every|"
    r"of|on|in|for)\s+)+", re.IGNORECASE)
# Where the phrase names the result: "the coat to scarlet", "the dog into a cat", "the sky with stars".
_RESULT = re.compile(r"\s+(?:to|into|with|as|so that|look like|looks like)\s+", re.IGNORECASE)
# "a red hat to the dog": what is added, and where.
_ONTO = re.compile(r"\s+(?:to|on|onto|into)\s+", re.IGNORECASE)
# Trailing words that say where, not what: "from the image", "in the photo".
_PLACE = re.compile(r"\s+(?:from|in|on|of)\s+(?:the|this)\s+(?:image|photo|picture|background)$", re.IGNORECASE)
# How a subject reads once an action is done to it.
_DONE = {
    "Removal": "removed", "Replacement": "replaced", "Recoloring": "recolored", "Colorization": "colorized",
    "Restoration": "restored", "Enhancement": "enhanced", "Tone Adjustment": "adjusted", "Relighting": "relit",
    "Style Transfer": "restyled", "Text Editing": "edited", "Blur": "blurred", "Crop": "cropped",
    "Extension": "extended", "Move": "moved", "Resize": "resized", "Retouching": "retouched",
}
COLOURS = {
    "scarlet": (255, 36, 0), "crimson": (220, 20, 60), "red": (210, 30, 30), "copper": (184, 115, 51),
    "orange": (245, 140, 20), "gold": (212, 175, 55), "yellow": (240, 220, 40), "green": (40, 160, 60),
    "teal": (0, 128, 128), "blue": (40, 80, 220), "navy": (20, 30, 110), "purple": (130, 50, 170),
    "pink": (240, 130, 170), "brown": (120, 75, 40), "black": (15, 15, 15), "white": (245, 245, 245),
    "gray": (128, 128, 128), "grey": (128, 128, 128),
}
_COLOUR = re.compile(r"\b(" + "|".join(COLOURS) + r")\b", re.IGNORECASE)


# ----------------------------------------------------------------------------- decomposition by rule


@dataclass(frozen=True)
class Operation:
    action: str
    subjects: list[str]
    goal: str
    text: str  # the request's own words for it


# "... and retain the balloons": what the request keeps is not edited.
_KEPT = re.compile(r"(?:keep|retain|leave|preserve|do not|don't)\b", re.IGNORECASE)
# Words after which a phrase stops naming the thing: "balloons in the background but blur them".
_QUALIFIER = re.compile(r"\s+(?:but|so|in|for|because|while)\s+.*$", re.IGNORECASE)


def _subjects(phrase: str) -> list[str]:
    phrase = _PLACE.sub("", phrase.strip()).replace("black and white", "black-and-white")
    subjects = []
    for part in re.split(r"\s+and\s+|,\s*", phrase):
        part = _DETERMINERS.sub("", _QUALIFIER.sub("", part.strip())).strip()
        if part and not _KEPT.match(part):
            subjects.append(" ".join(part.split()[:6]))
    return subjects


def operations(request: str) -> list[Operation]:
    """The request's operations, in its order: a taxonomy action, the things it edits, its goal."""
    found = []
    for action, text in keyword_operations(request):
        leading = leading_action(text)
        rest = leading[1] if leading else ("" if len(text.split()) == 1 else text.lower())  # "brighten"
        parts = _RESULT.split(rest, maxsplit=1)
        if action == "Addition" and (added := _ONTO.split(rest, maxsplit=1)) and len(added) == 2:
            subjects, goal = _subjects(added[1]), f"{_DETERMINERS.sub('', added[0]).strip()} added"
        elif len(parts) == 2:
            subjects, goal = _subjects(parts[0]), parts[1].strip()
        elif (colour := _COLOUR.search(rest)) and rest.endswith(colour.group(1).lower()):
            subjects, goal = _subjects(rest[:colour.start()]), colour.group(1).lower()  # "make the coat scarlet"
        else:  # the result is the subject, done: "the car" -> "car removed"
            subjects = _subjects(rest)
            goal = f"{subjects[0]} {_DONE.get(action, 'changed')}" if subjects else text.strip().rstrip(".")
        if action == "Transformation" and _COLOUR.fullmatch(goal.split(" or ")[0].strip()):
            action = "Recoloring"  # "change the coat to red"
        found.append(Operation(action, subjects or ["image"], goal or text.strip(), text.strip().rstrip(".")))
    return found


def decompose_by_rule(request: str) -> Decomposition:
    """A decomposition as the agent writes it: actions, subjects and goals, each listed once."""
    ops = operations(request)
    unique = lambda items: list(dict.fromkeys(items))  # noqa: E731 - order kept, repeats dropped
    think = f"The request asks for {len(ops)} edit(s): " + "; ".join(op.text for op in ops) + "."
    return Decomposition(actions=unique(op.action for op in ops),
                         subjects=unique(s for op in ops for s in op.subjects),
                         goals=unique(op.goal for op in ops), think=think)


def sub_requests_by_rule(request: str, max_steps: int = 8) -> list[str]:
    """One sub-request per operation, in the words of the request; the last ones merged into the
    final step when there are more than ``max_steps``."""
    steps = [op.text[0].upper() + op.text[1:] for op in operations(request)]
    if len(steps) > max_steps:
        steps = steps[:max_steps - 1] + ["; ".join(steps[max_steps - 1:])]
    return steps


def label_by_rule(request: str) -> dict:
    """The teacher's structured answer (rationale, actions, subjects, goals)."""
    decomposition = decompose_by_rule(request)
    return {"rationale": decomposition.think, "actions": decomposition.actions,
            "subjects": decomposition.subjects, "goals": decomposition.goals}


# ----------------------------------------------------------------------------- judging by measurement


@dataclass(frozen=True)
class Change:
    changed: float  # share of pixels that changed visibly
    mean: float  # mean change, 0..1
    roughness: float  # the edit's pixel-to-pixel roughness over the original's

    def scores(self) -> dict[str, int]:
        """Fulfillment grows with a visible change; preservation falls as the change spreads over the
        whole image; quality falls as the image turns rough (noise)."""
        fulfillment = sum(self.changed >= bound for bound in (0.002, 0.01, 0.03, 0.1))
        preservation = 3 - sum(self.changed > bound for bound in (0.4, 0.65, 0.9))
        quality = 3 - sum(self.roughness > bound for bound in (1.6, 2.5, 4.0))
        return {"fulfillment": fulfillment, "quality": quality, "preservation": preservation}

    def describe(self) -> str:
        return (f"{self.changed:.1%} of the pixels changed visibly (mean change {self.mean:.1%}); the edit is "
                f"{self.roughness:.1f}x as rough as the original")


def _small(image: Image.Image, size: tuple[int, int] | None = None) -> Image.Image:
    image = image.convert("RGB")
    if size is None:
        scale = min(1.0, 256 / max(image.size))
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.BILINEAR)


def _roughness(image: Image.Image) -> float:
    grey = image.convert("L")
    steps = [ImageChops.difference(grey, ImageChops.offset(grey, dx, dy)) for dx, dy in ((1, 0), (0, 1))]
    return sum(ImageStat.Stat(step).mean[0] for step in steps) / 2


def measure(original: Image.Image, edited: Image.Image) -> Change:
    """How the EDITED image differs from the ORIGINAL, compared at the original's aspect, at most 256 px."""
    before = _small(original)
    after = _small(edited, before.size)
    difference = ImageChops.difference(before, after).convert("L")
    changed = ImageStat.Stat(difference.point(lambda v: 255 if v > 24 else 0)).mean[0] / 255
    return Change(changed, ImageStat.Stat(difference).mean[0] / 255,
                  _roughness(after) / max(_roughness(before), 1.0))


def judgment(images: Sequence[Image.Image], sub_requests: Sequence[str] = ()) -> dict:
    """The judge's answer (Table 2's three scores, with reasoning; ``unmet`` for the verify rubric)."""
    if len(images) < 2:
        return {"reasoning": "Two images (the original, then the edit) are needed to judge an edit; got "
                             f"{len(images)}.", "fulfillment": 0, "quality": 0, "preservation": 0,
                "unmet": list(range(1, len(sub_requests) + 1))}
    change = measure(images[0], images[-1])
    scores = change.scores()
    unmet = [] if scores["fulfillment"] >= 3 else list(range(1, len(sub_requests) + 1))
    return {"reasoning": change.describe() + ".", **scores, "unmet": unmet}


def checklist(images: Sequence[Image.Image], sub_requests: Sequence[str]) -> dict:
    """The checklist verifier's answer: a sub-request is met when the edit visibly changed the image."""
    met = len(images) >= 2 and measure(images[0], images[-1]).scores()["fulfillment"] >= 2
    note = "" if met else "the edited image shows no visible change for it"
    return {"checks": [{"index": i, "note": note, "met": met} for i in range(1, len(sub_requests) + 1)]}


# ----------------------------------------------------------------------------- editing by rule


def edit_by_rule(image: Image.Image, prompt: str) -> Image.Image:
    """The middle of the image (an ellipse over about a quarter of it) edited as the prompt says."""
    image = image.convert("RGB")
    width, height = image.size
    mask = Image.new("L", image.size, 0)
    ImageDraw.Draw(mask).ellipse([width * 0.22, height * 0.22, width * 0.78, height * 0.78], fill=255)
    colour = _COLOUR.search(prompt)
    first = keyword_operations(prompt)[0][0] if prompt.strip() else ""
    if colour:
        tint = Image.new("RGB", image.size, COLOURS[colour.group(1).lower()])
        edited = Image.blend(image, tint, 0.6)
    elif first == "Removal":
        edited = image.filter(ImageFilter.GaussianBlur(max(2, min(width, height) // 6)))
    else:
        edited = ImageEnhance.Contrast(ImageEnhance.Brightness(image).enhance(1.25)).enhance(1.5)
    return Image.composite(edited, image, mask)


# ----------------------------------------------------------------------------- answering a prompt


# Each agent's prompt, recognised by its opening words.
ROLE_MARKERS = (
    ("sequence", "You are the sequencing agent"),
    ("checklist", "You are checking an image edit"),
    ("judge", "You are an expert image quality evaluator"),
    ("teacher", "You are labelling training data"),
)
_REQUEST_LINE = re.compile(r'^\s*(?:\*\*)?Edit Request:?(?:\*\*)?:?\s*"?(.*?)"?\s*$', re.IGNORECASE | re.MULTILINE)
_PLAN_ITEM = re.compile(r"^\s*(\d+)\.\s+(\S.*)$", re.MULTILINE)
_MAX_STEPS = re.compile(r"between 1 and (\d+) sub-requests")


def request_of(prompt: str) -> str:
    """The edit request a prompt quotes (its "Edit request:" line); the whole prompt when it quotes none."""
    match = _REQUEST_LINE.search(prompt)
    return match.group(1).strip() if match else prompt.strip()


def _plan(prompt: str) -> list[str]:
    return [item for _, item in _PLAN_ITEM.findall(prompt.split("sub-requests:", 1)[-1])]


def reply_in_kind(prompt: str, images: Sequence[Image.Image] = ()) -> str:
    """The answer to a decomposition, sequencing, judge, verifier or teacher prompt, from the request
    it quotes and the images it carries."""
    role = next((name for name, marker in ROLE_MARKERS if marker in prompt), "decompose")
    request = request_of(prompt)
    if role == "sequence":
        steps = _MAX_STEPS.search(prompt)
        plan = sub_requests_by_rule(request, int(steps.group(1)) if steps else 8)
        return json.dumps({"sub_requests": plan} if '"sub_requests"' in prompt else plan)
    if role == "checklist":
        return json.dumps(checklist(images, _plan(prompt)))
    if role == "judge":
        plan = _plan(prompt) if "planned the request as these sub-requests" in prompt else []
        return json.dumps(judgment(images, plan))
    if role == "teacher":
        return json.dumps(label_by_rule(request))
    return decompose_by_rule(request).render()
