"""GRPO training support: launch pre-flight checks, metric curves, checkpoint export.

The trainers themselves (EasyR1, upstream verl, TRL) run as separate programs started by the recipes
in ``recipes/``; this package checks their inputs before a launch and post-processes what they write.
``trl_grpo`` is the entry point the TRL recipe launches (TRL's ``GRPOTrainer`` with our data and rewards).
Nothing heavy is imported here.
"""
