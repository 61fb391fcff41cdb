"""Privacy: training consent, the erasure list, deletion that propagates, lineage, data minimisation.

docs/privacy.md says what tagwatch stores where, for how long, and what it cannot undo.
"""
