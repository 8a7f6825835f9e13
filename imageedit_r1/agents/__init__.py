"""The three agents of ImageEdit-R1: decomposition, sequencing and editing.

Each agent is imported from its own module so that importing this package stays cheap.
"""
