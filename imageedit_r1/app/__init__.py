"""``python -m imageedit_r1.app``: the interactive editor (Gradio) with editable plans.

Upload an image (or pick a sample drawn in code), type a request, press **Plan** to see the
decomposition and the ordered sub-requests, change them, and press **Edit**. The page and
``gradio_client`` share two endpoints, ``/plan`` and ``/execute``. See docs/app.md.

Modules: ``uploads`` (bounded, format-checked reading of uploaded files), ``service`` (the app's
work without any web code: plan, execute, editor choice, errors worded for the page, secrets
kept out), ``ui`` (the Gradio page), ``__main__`` (the command line). Importing this package
loads no Gradio: ``ui`` imports it when the app is built.
"""
