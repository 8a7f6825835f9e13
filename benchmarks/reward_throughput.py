"""Reward throughput on one core for one EasyR1 step: 512 prompts x 8 rollouts = 4,096 responses.

Prints responses/s side by side for: all responses well-formed; a realistic mix (75% well-formed,
15% near misses, 10% free text); the same mix through EasyR1's batch entry point; and an
adversarial mix: the realistic mix with a share of its rollouts (default 2%, twice the rate seen
in a real step at temperature 1.0) replaced by degenerate ones of 2,000 to 20,000 characters:
tails of newlines after a cut tag, floods of tags, brackets, commas and "<", code fences that
never close, very long lists and <think> bodies. Then the cost per character of each degenerate
kind alone at 20,000 characters: the worst case, which must stay flat (linear parsing).
Target: >= 20,000 responses/s on every mix. Run: python benchmarks/reward_throughput.py
"""

from __future__ import annotations

import argparse
import json
import random
import time

from imageedit_r1.decomposition import Decomposition
from imageedit_r1.integrations.easyr1 import compute_score as easyr1_compute_score
from imageedit_r1.rewards import _item, normalize, score
from imageedit_r1.taxonomy import ACTIONS

WORDS = ("coat hair sky car tree dog lamp balloon wall text face shirt window river bridge cat hat boat "
         "red blue copper scarlet bright soft clear old natural sunset snowy wooden").split()


def phrase(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) + rng.choice(["", "s"]) for _ in range(n))


def make_batch(rng: random.Random, prompts: int, rollouts: int) -> list[dict]:
    labels = list(ACTIONS)
    batch = []
    for _ in range(prompts):
        truth = Decomposition(rng.sample(labels, rng.randint(1, 3)), [phrase(rng, rng.randint(1, 2)) for _ in range(rng.randint(1, 4))],
                              [phrase(rng, rng.randint(1, 4)) for _ in range(rng.randint(1, 3))])
        ground_truth = truth.to_json()
        for _ in range(rollouts):
            kind = rng.random()
            d = Decomposition(
                rng.sample(labels, rng.randint(1, 3)) if rng.random() < 0.5 else list(truth.actions),
                [phrase(rng, rng.randint(1, 3)) for _ in range(rng.randint(0, 4))],
                [phrase(rng, rng.randint(1, 5)) for _ in range(rng.randint(0, 3))],
                think=" ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 80))),
            )
            text = d.render()
            if kind > 0.9:
                text = "I think we should " + phrase(rng, 30)
            elif kind > 0.75:
                text = text.replace("<think>", "").replace('["', "").replace('"]', "")
            batch.append({"response": text, "response_length": len(text) // 4, "ground_truth": ground_truth})
    return batch


GOOD = '<think>coat first</think><action>["Recoloring"]</action><subjects>["coat"]</subjects><goals>["red"]</goals>'

# Degenerate rollouts, each a function of the length to reach.
DEGENERATE = {
    "newline tail after a cut tag": lambda n: GOOD[:60] + "\n<" + "\n" * n,
    "flood of <think>": lambda n: "<think>" * (n // 7),
    "flood of </action><action>[": lambda n: "</action><action>[" * (n // 18),
    "flood of brackets": lambda n: "<think>x</think><action>[" + "[]," * (n // 3) + "]</action>",
    "flood of '< /'": lambda n: "< /" * (n // 3),
    "comma flood in a list": lambda n: "<think>x</think><subjects>" + "a," * (n // 2),
    "line flood in a list": lambda n: "<think>x</think><goals>" + "- coat\n" * (n // 7),
    "unclosed code fence": lambda n: "```json" + " " * n,
    "long <think>": lambda n: GOOD.replace("coat first", "word " * (n // 5)),
    "long list": lambda n: GOOD.replace('["coat"]', "[" + ",".join(['"coat"'] * (n // 7)) + "]"),
    "whitespace inside a '<'": lambda n: "<" + " \t" * (n // 2) + "/think>",
    "flood of '<' after a tag": lambda n: "<action>" + "<" * n,
    # One character that NFKC expands to four words (U+FDFA): the text normalised is ~18x longer.
    "ligature flood in a list": lambda n: "<think>x</think><subjects>" + "\ufdfa" * n + "</subjects>",
}


def adversarial_batch(rng: random.Random, batch: list[dict], rate: float) -> list[dict]:
    kinds = list(DEGENERATE)
    out = []
    for item in batch:
        if rng.random() < rate:
            text = DEGENERATE[rng.choice(kinds)](rng.randint(2_000, 20_000))
            item = {**item, "response": text, "response_length": len(text) // 4}
        out.append(item)
    return out


def measure(cases: list[tuple[str, callable, list]], repeats: int) -> list[tuple[str, float]]:
    """Best responses/s per case, the cases interleaved round by round so that a slow patch of
    the machine hits every case alike instead of whichever ran during it."""
    best = {name: float("inf") for name, _, _ in cases}
    for _ in range(repeats):
        for name, fn, batch in cases:
            normalize.cache_clear()  # fresh phrase caches each pass: no credit for earlier passes
            _item.cache_clear()
            # CPU time of this process: "responses/s on one core", less sensitive to other load.
            start = time.process_time()
            fn(batch)
            best[name] = min(best[name], time.process_time() - start)
    return [(name, len(batch) / best[name]) for name, _, batch in cases]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=512)
    parser.add_argument("--rollouts", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--adversarial-rate", type=float, default=0.02,
                        help="share of rollouts replaced by degenerate ones in the adversarial mix")
    args = parser.parse_args()
    rng = random.Random(0)
    mixed = make_batch(rng, args.prompts, args.rollouts)
    clean = [dict(item, response=json.loads(json.dumps(item["response"]))) for item in mixed
             if item["response"].startswith("<think>")]

    def per_item(batch):
        for item in batch:
            score(item["response"], item["ground_truth"])

    adversarial = adversarial_batch(random.Random(1), mixed, args.adversarial_rate)
    n_degenerate = sum(a is not m for a, m in zip(adversarial, mixed, strict=True))
    rows = measure(
        [
            ("well-formed only", per_item, clean),
            ("realistic mix", per_item, mixed),
            ("realistic mix, EasyR1 batch call", easyr1_compute_score, mixed),
            (f"adversarial mix ({n_degenerate} degenerate)", per_item, adversarial),
            ("adversarial mix, EasyR1 batch call", easyr1_compute_score, adversarial),
        ],
        args.repeats,
    )
    print(f"{len(mixed):,} responses per step ({args.prompts} prompts x {args.rollouts} rollouts), one core")
    for name, value in rows:
        print(f"  {name:<40} {value:>10,.0f} responses/s   {value / 20_000:5.2f}x the 20,000/s target")
    ground_truth = mixed[0]["ground_truth"]
    print("degenerate kinds alone, 20,000 characters each (best of rounds):")
    for name, make in DEGENERATE.items():
        text = make(20_000)
        seconds = min(_cpu_seconds(lambda text=text: score(text, ground_truth)) for _ in range(args.repeats))
        print(f"  {name:<40} {seconds * 1e6:8.0f} us   {seconds * 1e9 / len(text):6.1f} ns per character")


def _cpu_seconds(fn) -> float:
    start = time.process_time()
    fn()
    return time.process_time() - start


if __name__ == "__main__":
    main()
