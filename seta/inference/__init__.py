"""seta.inference: use a trained SETA adapter (load with its base, route, generate, merge, continue).

    adapter = SetaAdapter.load("results/tiny/seta/seed0/adapter")   # base and tokenizer from the folder
    for g in adapter.generate(["Classify the sentiment: ..."]):
        print(g.task, g.text, g.probs)                               # routed task (None: null expert)

Importing the package is cheap; torch is imported by its modules.
"""
