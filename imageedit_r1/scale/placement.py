"""Which work needs a GPU replica, and how many GPUs a replica asks for."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from imageedit_r1.endpoints import AgentConfig

LOCAL_AGENT_BACKENDS = ("transformers", "vllm")


def is_hosted_editor(name: str) -> bool:
    """True for editors behind an API (nano-banana, openai-image): they hold no model here."""
    from imageedit_r1.agents.editors import editor_class
    from imageedit_r1.agents.editors.api_common import HostedEditor

    return issubclass(editor_class(name), HostedEditor)


def agents_are_local(decomposer: AgentConfig | None, sequencer: AgentConfig | None) -> bool:
    """True when an agent runs its model in-process (transformers / vLLM engine), not on a server.

    No sequencer config means the decomposer's backend serves both (the pipeline's rule).
    """
    return any(agent is not None and agent.backend in LOCAL_AGENT_BACKENDS for agent in (decomposer, sequencer))
