"""GRPO training support: launch pre-flight checks, metric curves, checkpoint export.

The trainers themselves (EasyR1, upstream verl) run as separate programs started by the recipes in
``recipes/``; this package checks their inputs before a launch and post-processes what they write.
Nothing heavy is imported here.
"""
