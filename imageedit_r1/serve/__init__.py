"""``python -m imageedit_r1.serve``: ImageEdit-R1 for programs, as OpenAI's images API on Ray Serve.

Modules: ``config`` (the service config: pipelines and deployment sizes), ``errors`` (OpenAI's
error shapes), ``front_door`` (API keys, body sizes, uploaded images: checked before any work),
``api`` (the HTTP routes), ``work`` (what a replica does: plan a batch, edit an image),
``deployments`` (the Ray Serve ingress, planner and editor deployments), ``server`` (start, wait,
stop) and ``__main__`` (the command line). See docs/serving.md. Importing this package loads
neither Ray nor FastAPI: ``deployments`` and ``api`` import them when the service is built.
"""
