"""The agents of ImageEdit-R1: decomposition, sequencing and editing, and the judge that scores
edits (the evaluation's, and the verify stage's ``verifier``). ``asking`` is the one loop that asks
a model, reads its reply and asks again when the reply cannot be read.

Each agent is imported from its own module so that importing this package stays cheap.
"""
