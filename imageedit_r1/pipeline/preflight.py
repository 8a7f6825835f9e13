"""Check a pipeline config before any model runs: names, options, API keys, model weights.

A typo in ``editor.options`` used to surface only when the editor was built, after the agents
had worked for seconds; a missing API key for the editor only after the agents had run; a hub
model that is not there only after minutes of download retries. ``pipeline_problems`` finds all
of these in well under a second (the hub check waits at most a few seconds where the network
drops packets) and says how to fix each one.
"""

from __future__ import annotations

from typing import Any

from imageedit_r1.backends.checks import accepted_options, api_key_problem, backend_problems, unknown_options
from imageedit_r1.endpoints import API_BACKENDS, AgentConfig, EndpointConfig, endpoint_options, retry_policy
from imageedit_r1.pipeline.config import PipelineConfig


class PipelinePreflightError(ValueError):
    """The pipeline cannot run as configured; ``problems`` holds one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


def server_url_problem(setting: str, agent: EndpointConfig) -> str | None:
    """``base_url`` on a backend that runs the model in this process (it would be ignored)."""
    if agent.base_url and agent.backend not in API_BACKENDS:
        return (f"{setting}.base_url is set ({agent.base_url}) but {setting}.backend is {agent.backend!r}, which "
                f"loads the model in this process: set {setting}.backend=openai to use the server "
                f"(or give the backend with the model, openai:{agent.model}), or drop {setting}.base_url")
    return None


def agent_problems(role: str, agent: AgentConfig, *, check_models: bool = True) -> list[str]:
    """Problems of one agent: backend name, backend and agent options, API key, model weights."""
    url = server_url_problem(role, agent)
    if url:
        return [url]
    problems = backend_problems(agent.backend, endpoint_options(agent), role, check_models=check_models)
    if not problems or not problems[0].startswith(f"{role}.backend:"):
        problems += unknown_options(_agent_class(role), agent.agent_options, f"{role}.agent_options",
                                    skip=("backend", "temperature", "max_tokens", "reasks"))
    return problems


def _agent_class(role: str):
    if role == "sequencer":
        from imageedit_r1.agents.sequencer import Sequencer

        return Sequencer
    from imageedit_r1.agents.decomposer import Decomposer

    return Decomposer


def editor_problems(name: str, options: dict[str, Any], *, check_models: bool = True) -> list[str]:
    """Problems of the editing agent: its name, options, API key and weights."""
    from imageedit_r1.agents.editors import editor_class

    try:
        cls = editor_class(name)
    except ValueError as exc:
        return [f"editor.name: {exc}"]
    problems = unknown_options(cls, options, "editor.options")
    if options.get("retry") is not None and "retry" in accepted_options(cls)[0]:
        try:  # the hosted editors' retries: an endpoint's RetryConfig, checked key by key
            retry_policy(options["retry"], "editor.options.retry")
        except ValueError as exc:
            problems.append(str(exc))
    key = api_key_problem(cls, options, f"the {name} editor", "editor.options")
    if key:
        problems.append(key)
    default_model = getattr(cls, "default_model_id", None)
    if check_models and default_model is not None and not problems:
        from imageedit_r1.hub import model_problem

        missing = model_problem(options.get("model_id") or default_model, setting="editor.options.model_id",
                                what=f"{name} editor model")
        if missing:
            problems.append(missing)
    return problems


def pipeline_problems(config: PipelineConfig, *, editor: bool = True, agents: bool = True,
                      check_models: bool = True) -> list[str]:
    """Everything that would stop ``config`` from running, found before any model loads.

    ``editor`` / ``agents`` False skip those parts (an editor or agents given as objects).
    """
    problems: list[str] = []
    if agents and config.mode != "original":
        problems += agent_problems("decomposer", config.decomposer, check_models=check_models)
        if config.sequencer is not None:
            problems += agent_problems("sequencer", config.sequencer, check_models=check_models)
    if editor:
        problems += editor_problems(config.editor.name, dict(config.editor.options), check_models=check_models)
    if config.verify is not None:  # the verifier is an agent too: its key and weights, before any work
        judge = config.verify.judge
        url = server_url_problem("verify.judge", judge)
        problems += [url] if url else backend_problems(judge.backend, endpoint_options(judge), "verify.judge",
                                                       check_models=check_models)
    return list(dict.fromkeys(problems))


def check_pipeline(config: PipelineConfig, **kwargs: Any) -> None:
    """Raise ``PipelinePreflightError`` listing every problem ``pipeline_problems`` finds."""
    problems = pipeline_problems(config, **kwargs)
    if problems:
        raise PipelinePreflightError(problems)
