"""Where a SETA adapter's gate sends general-ability prompts: per benchmark, the share of forward rows each
task's expert takes and the share the null expert (the base alone) takes, with the routed score.

    python reproduce/general_routing.py docs/results/smollm2/seta/seed0/adapter [--limit 200] [--benchmarks mmlu,piqa,bbh]

Each benchmark is scored alone through lm-evaluation-harness, routed exactly as a run's general-ability pass
routes (`SetaAdapter.route_callbacks`); the items are the first --limit of each benchmark, as `seta run
--general-limit` takes them. A row is one forward batch row (an MMLU question's four one-token choices share
one row). A drop in a benchmark's score after the stream comes from the rows an expert took: the null
expert's rows are answered by the base itself.
"""

from __future__ import annotations

from pathlib import Path

import click

from seta.experiment.failures import error_boundary


def route_shares(adapter, general_dir: Path, benchmarks: list[str], limit: int | None, batch_size: int,
                 max_gen_toks: int | None, progress: bool = False) -> dict[str, dict]:
    """benchmark -> {"score", "metric", "rows", "shares": {routed task or "null": % of rows}}."""
    from seta.eval.harness import general_ability_details, load_general_data

    out = {}
    for bench in benchmarks:
        data = load_general_data(general_dir, [bench], limit=limit)
        counts: dict[str, int] = {}
        route, clear = adapter.route_callbacks(counts)
        res = general_ability_details(adapter.seta, adapter.tokenizer, data, route=route, clear=clear,
                                      batch_size=batch_size, max_gen_toks=max_gen_toks, progress=progress)[bench]
        rows = sum(counts.values())
        out[bench] = {"score": res.score, "metric": res.metric, "rows": rows,
                      "shares": {k: 100.0 * v / rows for k, v in counts.items()} if rows else {}}
    return out


def markdown(shares: dict[str, dict], tasks: list[str]) -> str:
    names = ["null", *tasks]
    lines = ["| Benchmark | Score | Rows | " + " | ".join(names) + " |", "|---|---:|---:|" + "---:|" * len(names)]
    for bench, r in shares.items():
        cells = [f"{r['shares'].get(n, 0.0):.0f}%" for n in names]
        lines.append(f"| {bench} | {r['score']:.1f} ({r['metric']}) | {r['rows']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("adapter_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--general-data", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="General-ability folder (default: the asset cache's, as `seta fetch` builds it).")
@click.option("--benchmarks", default="mmlu,piqa,bbh", show_default=True)
@click.option("--limit", type=int, default=200, show_default=True, help="Items per benchmark (the smollm2 preset's).")
@click.option("--batch-size", type=int, default=16, show_default=True)
@click.option("--max-gen-toks", type=int, default=8, show_default=True, help="BBH decoding cap (the smollm2 preset's).")
@click.option("--no-progress", is_flag=True)
@error_boundary
def main(adapter_dir, general_data, benchmarks, limit, batch_size, max_gen_toks, no_progress):
    """Print, per benchmark, the routed score and the share of rows each expert and the null expert took."""
    from seta.assets.fetch import asset_paths
    from seta.inference.adapter import SetaAdapter

    if general_data is None:
        general_data = asset_paths()[2]
        if general_data is None:
            raise click.ClickException("no general-ability folder in the asset cache: run "
                                       "`python reproduce/fetch_assets.py`, or pass --general-data")
    adapter = SetaAdapter.load(adapter_dir)
    names = [b.strip() for b in benchmarks.split(",") if b.strip()]
    shares = route_shares(adapter, general_data, names, limit, batch_size, max_gen_toks, progress=not no_progress)
    click.echo(markdown(shares, adapter.tasks), nl=False)


if __name__ == "__main__":
    main()
