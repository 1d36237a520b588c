"""Architecture configs (HF config.json fields, no weights) of the paper's base models.

Load with ``seta.models.architecture_config(name)``; build weightless with
``seta.models.build_from_architecture(name, device="meta")`` for block counts and memory plans.
"""
