"""seta.inference: use a trained SETA adapter (load with its base, route, generate, merge, continue).

    from seta.inference import SetaAdapter
    adapter = SetaAdapter.load("results/tiny/seta/seed0/adapter")   # base and tokenizer from the folder
    for g in adapter.generate(["Classify the sentiment: ..."]):
        print(g.task, g.text, g.probs)                               # routed task (None: null expert)

Importing the package is cheap; torch is imported by its modules.
"""

_EXPORTS = {"SetaAdapter": "seta.inference.adapter", "Generation": "seta.inference.adapter"}


def __getattr__(name):  # `from seta.inference import SetaAdapter`, with torch imported only then
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'seta.inference' has no attribute {name!r}")
