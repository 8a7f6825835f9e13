"""ImageEdit-R1: multi-agent image editing with an RL-trained decomposition agent.

Importing the package is cheap: no torch, diffusers, vLLM or API SDKs are loaded here.
Heavy dependencies are imported inside the backend or editor that needs them.
"""

from imageedit_r1.decomposition import Decomposition, parse, render

__version__ = "0.1.0"

__all__ = ["Decomposition", "parse", "render", "__version__"]
