"""ImageEdit-R1 at inference: decomposition agent → sequencing agent → editing agent.

    from imageedit_r1.pipeline import ImageEditR1
    pipe = ImageEditR1.from_config("examples/configs/flux_kontext.yaml")
    result = pipe(image, "Change the color of her coat and possibly hair to scarlet or copper red")

Modules: ``config`` (the one configuration schema), ``core`` (``ImageEditR1``), ``plan``
(``Plan``: what the agents propose, editable before ``execute``), ``trace``
(traces, results, failures), ``outputs`` (image and trace files), ``batch`` (manifests),
``cli`` (``python -m imageedit_r1.pipeline``), ``demo`` (the offline demo) and ``verify`` (the
optional verify stage: the verifier agent, ``imageedit_r1.agents.verifier``, scores each edit; the
loop refines within a budget and keeps the best; ``config.verify``). Importing this
package loads no torch: models load when an agent or the editor is first used.
"""

from imageedit_r1.pipeline.config import (
    DECOMPOSE_FALLBACKS,
    MODES,
    SEQUENCE_FALLBACKS,
    AgentConfig,
    EditorConfig,
    PipelineConfig,
    VerifyConfig,
    load_pipeline_config,
)
from imageedit_r1.pipeline.core import AgentUnavailableError, ImageEditR1
from imageedit_r1.pipeline.plan import Plan, PlanError, join_sub_requests
from imageedit_r1.pipeline.trace import EditFailed, EditResult, write_trace

__all__ = [
    "DECOMPOSE_FALLBACKS",
    "MODES",
    "SEQUENCE_FALLBACKS",
    "AgentConfig",
    "AgentUnavailableError",
    "EditFailed",
    "EditResult",
    "EditorConfig",
    "ImageEditR1",
    "PipelineConfig",
    "Plan",
    "PlanError",
    "VerifyConfig",
    "join_sub_requests",
    "load_pipeline_config",
    "write_trace",
]
