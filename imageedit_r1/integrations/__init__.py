"""Thin adapters from the trainers' reward call contracts to ``imageedit_r1.rewards``."""
