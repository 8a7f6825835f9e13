"""Cannot run here: a model, a key or a package that this machine lacks, told apart from failures.

Such an error hits every item of a run alike (missing weights, an unset API key, an absent
package), so a batch stops at the first one instead of recording a failure per item, and a
pipeline does not fall back. Every such exception of the project (the editors'
``EditorUnavailableError``, the chat backends' ``BackendUnavailableError``, the pipeline's
``AgentUnavailableError``) is an ``Unavailable``; an ``ImportError`` counts too.
``is_unavailable`` is the one test, read by the pipeline, the evaluation runner, the Ray
replicas and the app.
"""

from __future__ import annotations


class Unavailable(Exception):
    """Mixed into every "cannot run here" exception: weights, an API key or a package is missing."""


def is_unavailable(exc: BaseException | None) -> bool:
    """True for errors every run on this machine would hit alike: stop, do not fall back or retry."""
    return isinstance(exc, (Unavailable, ImportError))
