"""Which work needs a GPU replica, and how many GPUs a replica asks for."""

from __future__ import annotations

from typing import Any

LOCAL_AGENT_BACKENDS = ("transformers", "vllm")


def is_hosted_editor(name: str) -> bool:
    """True for editors behind an API (nano-banana, openai-image): they hold no model here."""
    from imageedit_r1.agents.editors import editor_class
    from imageedit_r1.agents.editors.api_common import HostedEditor

    return issubclass(editor_class(name), HostedEditor)


def agents_are_local(decomposer: dict[str, Any] | None, sequencer: dict[str, Any] | None) -> bool:
    """True when an agent runs its model in-process (transformers / vLLM engine), not on a server.

    An empty agent config is the pipeline's default: the transformers backend.
    """
    for agent in (decomposer, sequencer):
        if agent is None:
            continue
        if agent.get("backend", "transformers") in LOCAL_AGENT_BACKENDS:
            return True
    return False
