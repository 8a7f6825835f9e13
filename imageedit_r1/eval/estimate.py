"""``eval run --estimate``: the pending plans, edits and judge calls of a run, with their estimated cost.

Only work the run would do is counted (finished items are read from the run's stores), so the
estimate of a half-finished run is what finishing it costs. Token counts are estimates from the
prompt text and the images' sizes (a Gemini judge's thinking room counted as output, at most);
prices come from the config. Plans are counted once per (agent identity, sample): one row per
identity names the methods that share them; agents that run here (transformers, vLLM) cost nothing.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

from imageedit_r1.agents.judge import judge_prompt
from imageedit_r1.costs import cost_usd, image_tokens, price_for, text_tokens
from imageedit_r1.endpoints import JudgeConfig
from imageedit_r1.eval.config import PIPELINE_KINDS, MethodConfig


@dataclass
class EstimateRow:
    what: str
    calls: int
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = 0.0


def estimate_rows(runner: Any) -> list[EstimateRow]:
    """One row per method's edits, per verified method's verifier calls and per judge (an ``EvalRunner``)."""
    config = runner.config
    items = runner.items()
    rows: list[EstimateRow] = []
    pending_edits = []
    verify_rows: list[EstimateRow] = []
    for method in config.methods:
        todo = [item for item in items if item.method is method and runner.edit_needed(item)]
        pending_edits += todo
        steps = 2 if method.mode == "multi-turn" and method.kind in PIPELINE_KINDS else 1
        calls = len(todo) * steps
        what = f"edit   {method.name}"
        if method.kind == "pipeline-verify":
            verify = method.verify
            calls *= verify.attempts * verify.candidates  # at most: every attempt runs
            what += f" (<= {verify.attempts}x{verify.candidates} each)"
            verify_rows.append(_verify_row(runner, method, todo))
        cost: float | None = 0.0
        if method.kind == "original" or method.kind in PIPELINE_KINDS:
            price = price_for(config.prices, method.editor.options.get("model"), method.editor.name)
            cost = cost_usd(price, images=calls) if price else 0.0
        rows.append(EstimateRow(what, calls if method.kind == "original" or method.kind in PIPELINE_KINDS
                                else 0, cost_usd=cost))
    rows += verify_rows
    rows += _plan_rows(runner)
    pending_set = {id(item) for item in pending_edits}
    for judge in config.judges:
        calls = prompt = 0
        for item in items:
            record = runner.edits.get(runner.edit_key(item))
            will_have_edit = id(item) in pending_set or (record or {}).get("status") == "ok"
            if not will_have_edit or not runner.judgment_needed(item, judge, None):
                continue
            calls += 1
            prompt += _judge_prompt_tokens(runner, item, judge, judge_prompt(item.sample.request))
        completion = calls * completion_per_call(config, judge)
        price = price_for(config.prices, judge.model)
        rows.append(EstimateRow(f"judge  {judge.name} ({judge.model})", calls, prompt, completion,
                                cost_usd(price, prompt, completion) if price else None))
    return rows


def _verify_row(runner: Any, method: MethodConfig, todo: list) -> EstimateRow:
    """The verifier's calls for a method's pending edits, at most: one per candidate of every
    attempt (capped by ``max_calls``, which also counts the first edit), plus their tokens."""
    from imageedit_r1.agents.verifier import verification_prompt

    config, verify = runner.config, method.verify
    per_item = verify.attempts * verify.candidates
    if verify.max_calls is not None:
        per_item = max(1, min(per_item, verify.max_calls - 1))
    calls = prompt = 0
    for item in todo:
        # The sub-requests are not known before planning: the request stands in for them.
        text = verification_prompt(verify.rubric, item.sample.request, [item.sample.request])
        calls += per_item
        prompt += per_item * _judge_prompt_tokens(runner, item, verify.judge, text)
    completion = calls * completion_per_call(config, verify.judge)
    price = price_for(config.prices, verify.judge.model)
    if price is None and (verify.prices.input_per_mtok or verify.prices.output_per_mtok):
        price = verify.prices
    return EstimateRow(f"verify {method.name} ({verify.judge.model}, at most)", calls, prompt, completion,
                       cost_usd(price, prompt, completion) if price else None)


def _plan_rows(runner: Any) -> list[EstimateRow]:
    """One row per agent identity with plans to make: two asks a plan (decompose, sequence, re-asks
    not counted), shared by the methods named; agents that run here are free."""
    from imageedit_r1.eval.plans import plan_groups
    from imageedit_r1.prompts import render_prompt

    config = runner.config
    rows = []
    for group in plan_groups(runner):
        method = group.methods[0]
        agents = [method.decomposer, method.sequencer or method.decomposer]
        prompt = 0
        for item in group.todo:
            width, height = original_size(runner, item, config.estimate.image_side)
            text = render_prompt("decompose", content=item.sample.request)
            prompt += sum(text_tokens(text) + _agent_image_tokens(agent, width, height) for agent in agents)
        completion = len(group.todo) * config.estimate.plan_tokens
        local = all(agent.backend in ("transformers", "vllm") for agent in agents)
        price = price_for(config.prices, method.decomposer.model)
        cost = 0.0 if local else (cost_usd(price, prompt, completion) if price else None)
        models = " + ".join(dict.fromkeys(agent.model.rsplit("/", 1)[-1] for agent in agents))
        rows.append(EstimateRow(f"plan   {models} (shared by {', '.join(group.names)})", 2 * len(group.todo),
                                prompt, completion, cost))
    return rows


def _agent_image_tokens(agent: Any, width: int, height: int) -> int:
    """Image tokens an agent is sent: the image budget's count for a Qwen agent, else the provider's."""
    if agent.backend in ("transformers", "vllm") or (agent.backend == "openai" and agent.base_url):
        from imageedit_r1.image_budget import DEFAULT_BUDGET

        return DEFAULT_BUDGET.image_tokens(width, height)
    return image_tokens("gemini" if agent.backend == "gemini" else "openai", width, height)


def completion_per_call(config: Any, judge: JudgeConfig) -> int:
    """Output tokens one judge call is expected to bill: the reply, plus the room a Gemini judge
    leaves for thinking (billed as output; at most that much)."""
    thinking = judge.thinking()
    return config.estimate.completion_tokens + (thinking.room if thinking is not None else 0)


def _judge_prompt_tokens(runner: Any, item: Any, judge: JudgeConfig, text: str) -> int:
    """Prompt tokens of one judge ask about ``item``: ``text`` and both images at the judge's side."""
    width, height = original_size(runner, item, runner.config.estimate.image_side)
    scale = min(1.0, judge.max_image_side / max(width, height))
    width, height = max(1, round(width * scale)), max(1, round(height * scale))
    return text_tokens(text) + 2 * image_tokens(judge.provider, width, height)


def original_size(runner: Any, item: Any, default: int) -> tuple[int, int]:
    """The original's size when it is on disk already (header only), else ``default`` square."""
    path = runner.original_path(item)
    if path.exists():
        from PIL import Image

        with contextlib.suppress(OSError), Image.open(path) as image:
            return image.size
    return default, default


def format_estimate(rows: list[EstimateRow]) -> str:
    lines = [f"{'what':<48} {'calls':>8} {'prompt tok':>12} {'compl. tok':>11} {'est. USD':>10}"]
    total = 0.0
    unpriced = False
    for row in rows:
        usd = "no price" if row.cost_usd is None else f"{row.cost_usd:,.2f}"
        unpriced |= row.cost_usd is None and row.calls > 0
        total += row.cost_usd or 0.0
        lines.append(f"{row.what:<48} {row.calls:>8,} {row.prompt_tokens:>12,} {row.completion_tokens:>11,} {usd:>10}")
    lines.append(f"{'total':<48} {sum(r.calls for r in rows):>8,} {'':>12} {'':>11} {total:>10,.2f}"
                 + ("  (+ unpriced models)" if unpriced else ""))
    return "\n".join(lines)
