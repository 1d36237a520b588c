"""Run every method over a stream and write summary.json, summary.md, plots and adapters.

    python reproduce/run_all.py                      # the embedded default on CPU -> results/tiny/
    python reproduce/run_all.py --quick              # a smoke run of every method
    python reproduce/run_all.py --preset llama2-7b --model PATH --data-dir TRACE_DIR
    python reproduce/run_all.py --preset qwen3-4b --dry-run   # memory plan only
    python reproduce/run_all.py ... --general-data DIR      # + MMLU/BBH/PIQA through lm-eval, before and after
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import click
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from presets import ABLATIONS, ALL_METHODS, PRESETS, QUICK, Preset, with_tasks  # noqa: E402

from seta.train.strategies import STRATEGIES  # noqa: E402


def _load_stream(preset: Preset, data_dir, seed: int):
    from seta.data import load_trace, synthetic_stream

    if data_dir is not None:
        return list(load_trace(data_dir, **{k: v for k, v in preset.stream.items() if k in ("order", "tasks")}, seed=seed))
    if preset.needs_model_path:
        raise click.UsageError(f"--preset {preset.name} needs --data-dir pointing at a TRACE-format directory")
    return list(synthetic_stream(seed=seed, **preset.stream))


def _base_factory(preset: Preset, model_path, tokenizer, cache_dir, progress=True):
    """A function returning a fresh copy of the base model for each method."""
    from seta.models import build_tiny_model, load_base_model

    if preset.needs_model_path or model_path is not None:
        if model_path is None:
            raise click.UsageError(f"--preset {preset.name} needs --model PATH (a local HF model directory)")
        return lambda: load_base_model(model_path, load_in_4bit=preset.load_in_4bit,
                                       device_map="auto" if torch.cuda.is_available() else "cpu",
                                       gradient_checkpointing=preset.train.gradient_checkpointing)
    from seta.data import generic_corpus
    from seta.train.pretrain import cached_pretrained_base

    texts = list(generic_corpus(preset.train.seed).train)
    key = {"arch": preset.arch, **preset.tiny_model}

    def build():
        return build_tiny_model(preset.arch, tokenizer=tokenizer, seed=preset.train.seed, **preset.tiny_model)

    def factory():
        model, _ = cached_pretrained_base(build, key, tokenizer, texts, preset.pretrain, cache_dir, progress=progress)
        for p in model.parameters():
            p.requires_grad_(False)
        return model

    return factory


def _heldout_ppl(strategy, tokenizer, seed: int) -> float:
    """Held-out perplexity of the generic text, routed the way the method routes (general ability)."""
    from seta.data import generic_corpus
    from seta.train.pretrain import perplexity

    texts = list(generic_corpus(seed).heldout)

    class Routed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = strategy.model

        def forward(self, input_ids):
            strategy.route({"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}, -1)
            try:
                return strategy.model(input_ids=input_ids)
            finally:
                strategy.clear_route()

    return perplexity(Routed(), tokenizer, texts)


def _strategy_route(strategy):
    """(route, clear) callbacks for the harness: the method routes each prompt batch as at inference,
    without the task id (``strategy.route(inputs, -1)``), and ``clear_route`` undoes it."""
    def route(input_ids, attention_mask):
        strategy.route({"input_ids": input_ids, "attention_mask": attention_mask}, -1)

    return route, strategy.clear_route


def _general_ability(model, tokenizer, data, cfg: Preset, progress: bool, strategy=None, max_gen_toks=None) -> dict:
    """MMLU/BBH/PIQA scores through lm-evaluation-harness, routed the way the method routes.
    max_gen_toks: BBH generation cap (None: lm-eval's 256)."""
    from seta.eval.harness import general_ability_details

    route, clear = _strategy_route(strategy) if strategy is not None else (None, None)
    res = general_ability_details(model, tokenizer, data, route=route, clear=clear, progress=progress,
                                  batch_size=cfg.train.eval_batch_size, max_gen_toks=max_gen_toks)
    return {b: {"score": r.score, "metric": r.metric, "n": r.n, "subsets": r.subsets, **r.other} for b, r in res.items()}


def _general_table(harness: dict) -> str:
    """Markdown table of the harness scores (mean over seeds), base first."""
    import numpy as np

    tasks = harness["tasks"]
    first = harness["base"][0]
    head = " | ".join(f"{t.upper()} {first[t]['metric']} (n={first[t]['n']})" for t in tasks)
    rows = [("base", harness["base"])] + list(harness["after"].items())
    shots = ", ".join(f"{t} {harness['num_fewshot'][t]}" for t in tasks)
    lines = ["## General ability (lm-evaluation-harness)", "",
             f"Few-shot: {shots}; scores 0-100, mean over seeds; methods routed as at inference (no task id).", "",
             f"| Model | {head} |", "|---|" + "---:|" * len(tasks)]
    for name, runs in rows:
        lines.append(f"| {name} | " + " | ".join(f"{np.mean([r[t]['score'] for r in runs]):.1f}" for t in tasks) + " |")
    return "\n".join(lines) + "\n"


def dry_run(preset: Preset) -> None:
    """Build the architecture on the meta device and print the memory plan."""
    from memory_plan import memory_plan

    click.echo(memory_plan(preset))


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--preset", type=click.Choice(sorted(PRESETS)), default="tiny", show_default=True, help="Configuration to run.")
@click.option("--methods", default=",".join(ALL_METHODS), show_default=True,
              help=f"Comma-separated methods; ablations: {', '.join(ABLATIONS)}.")
@click.option("--seeds", default="0", show_default=True, help="Comma-separated seeds.")
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Output directory (default results/<preset>).")
@click.option("--model", "model_path", type=click.Path(), default=None, help="Local HF model directory (paper presets).")
@click.option("--data-dir", type=click.Path(), default=None, help="TRACE-format data directory (any preset).")
@click.option("--tasks", "task_names", default=None, help="Comma-separated tasks of --data-dir to run, in this order.")
@click.option("--general-data", type=click.Path(), default=None,
              help="Directory of local MMLU/BBH/PIQA files (layout: seta/eval/harness.py): scored through "
                   "lm-evaluation-harness for the base and after each method's stream.")
@click.option("--general-tasks", default="mmlu,bbh,piqa", show_default=True,
              help="Comma-separated benchmarks of --general-data to run.")
@click.option("--general-limit", type=click.IntRange(min=1), default=None,
              help="Cap on the items scored per benchmark (spread over its subjects/subtasks).")
@click.option("--resume", is_flag=True, help="Continue each method from its last finished task.")
@click.option("--quick", is_flag=True, help="Smoke run of every method (tiny sizes, one epoch).")
@click.option("--dry-run", is_flag=True, help="Print the memory plan and exit.")
@click.option("--no-progress", is_flag=True, help="Hide progress bars.")
def main(preset, methods, seeds, out, model_path, data_dir, task_names, general_data, general_tasks, general_limit,
         resume, quick, dry_run, no_progress):
    """Reproduce SETA and the baselines on one stream; write an honest report."""
    cfg = PRESETS[preset]
    if quick:
        if cfg.needs_model_path:
            raise click.UsageError("--quick runs the tiny preset only")
        cfg = QUICK
    if dry_run:
        globals()["dry_run"](cfg)
        return
    names = [m.strip() for m in methods.split(",") if m.strip()]
    unknown = [m for m in names if m not in STRATEGIES]
    if unknown:
        raise click.BadParameter(f"unknown method(s) {unknown}; known: {', '.join(STRATEGIES)}", param_hint="--methods")
    try:
        seed_list = [int(s) for s in seeds.split(",")]
    except ValueError:
        raise click.BadParameter(f"seeds must be comma-separated integers, got {seeds!r}", param_hint="--seeds")
    if model_path is not None and not Path(model_path).exists():
        raise click.BadParameter(f"model directory {model_path} does not exist", param_hint="--model")
    if data_dir is not None and not Path(data_dir).is_dir():
        raise click.BadParameter(f"data directory {data_dir} does not exist", param_hint="--data-dir")
    if cfg.needs_model_path and model_path is None:
        raise click.UsageError(f"--preset {cfg.name} needs --model PATH (a local HF model directory) and --data-dir PATH")
    if cfg.needs_model_path and data_dir is None:
        raise click.UsageError(f"--preset {cfg.name} needs --data-dir pointing at a TRACE-format directory")
    cfg = with_tasks(cfg, task_names, data_dir)  # checks --tasks against the directory before any training
    general = _load_general(general_data, general_tasks, general_limit)
    out_dir = Path(out or f"results/{cfg.name}")
    try:
        run(cfg, names, seed_list, out_dir, model_path, data_dir, resume, not no_progress, general)
    except (ValueError, FileNotFoundError) as err:
        raise click.ClickException(str(err))


def _load_general(path, tasks: str, limit):
    """Read and check --general-data before any training, so that a bad file costs seconds, not hours."""
    if path is None:
        if limit is not None:
            raise click.UsageError("--general-limit needs --general-data")
        return None
    if not Path(path).is_dir():
        raise click.BadParameter(f"general-ability directory {path} does not exist", param_hint="--general-data")
    try:
        from seta.eval.harness import load_general_data
    except ImportError as err:
        raise click.UsageError(str(err))
    try:
        return load_general_data(path, [t.strip() for t in tasks.split(",") if t.strip()], limit=limit)
    except (ValueError, FileNotFoundError) as err:
        raise click.ClickException(str(err))


def run(cfg: Preset, names, seeds, out_dir: Path, model_path, data_dir, resume: bool, progress: bool, general=None):
    from seta.data import build_tiny_tokenizer
    from seta.eval.report import BlockMap, GrowthCurve, MethodResult, write_report
    from seta.models import load_tokenizer
    from seta.train.loop import ContinualTrainer
    from seta.train.strategies import build_strategy

    torch.set_num_threads(max(1, torch.get_num_threads()))
    tokenizer = load_tokenizer(model_path) if model_path else build_tiny_tokenizer()
    out_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, list] = {m: [] for m in names}
    extras: dict = {}
    tasks = None
    for seed in seeds:
        train_cfg = replace(cfg.train, seed=seed)
        tasks = _load_stream(cfg, data_dir, seed)
        factory = _base_factory(replace(cfg, train=train_cfg), model_path, tokenizer, out_dir.parent / ".cache", progress)
        base_scores = None
        gen_cap = None if model_path else cfg.train.max_new_tokens  # the tiny base rarely stops by itself
        need_ppl = model_path is None and "ppl_base" not in extras
        if need_ppl or general is not None:
            base = factory()
            if need_ppl:
                from seta.data import generic_corpus
                from seta.train.pretrain import perplexity

                extras["ppl_base"] = perplexity(base, tokenizer, list(generic_corpus(seed).heldout))
            if general is not None:
                click.echo(f"[seed {seed}] general ability of the base (lm-evaluation-harness) ...")
                scores = _general_ability(base, tokenizer, general, cfg, progress, max_gen_toks=gen_cap)
                extras.setdefault("general_base", []).append(scores)
            del base
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        for name in names:
            click.echo(f"[seed {seed}] {name} ...")
            strategy = build_strategy(name, factory(), tokenizer, replace(cfg.sparse, gate=replace(cfg.sparse.gate, seed=seed)))
            run_dir = out_dir / name / f"seed{seed}"
            trainer = ContinualTrainer(strategy, tasks, train_cfg, run_dir, progress=progress)
            if base_scores is None and not strategy.joint:
                base_scores = trainer.evaluate_base()
            t0 = time.perf_counter()
            res = trainer.run(resume=resume, base_scores=base_scores)
            strategy.save_adapter(run_dir / "adapter")
            if model_path is None:
                res.extra["heldout_ppl_after"] = _heldout_ppl(strategy, tokenizer, seed)
            if general is not None:
                res.extra["general_ability"] = _general_ability(strategy.model, tokenizer, general, cfg, progress,
                                                                strategy, gen_cap)
            res.extra["base_scores"] = base_scores
            if name == "seta" and seed == seeds[0]:
                extras["block_map"] = BlockMap.from_block_index(strategy.seta.index, strategy.seta.registry.owner_counts())
                extras["growth_ratio"] = strategy.seta.registry.growth_ratio()
            results[name].append(res)
            (run_dir / "result.json").write_text(json.dumps({**res.__dict__, "OP": res.OP, "BWT": res.BWT}, default=str, indent=1))
            click.echo(f"  OP {res.OP:.1f}  BWT {res.BWT:.1f}  routing {res.routing_acc}  ({time.perf_counter() - t0:.0f}s)")
    methods = []
    for name, runs in results.items():
        methods.append(MethodResult(
            name=name, R=[r.R for r in runs], base_scores=runs[0].base_scores,
            routing_acc=[r.routing_acc for r in runs] if runs[0].routing_acc is not None else None,
            trainable_params=runs[0].trainable_params,
            allocated_params=[r.allocated_params for r in runs] if runs[0].allocated_params is not None else None,
            wall_s=[r.wall_s for r in runs], peak_mem_mb=[r.peak_mem_mb for r in runs],
            routing_confusion=runs[0].routing_confusion,
            per_task=[r.extra.get("per_task") for r in runs] if runs[0].extra.get("per_task") else None,
        ))
    growth = None
    if "seta" in results and results["seta"][0].extra.get("growth"):
        per_task = results["seta"][0].extra["growth"]
        k = per_task[0]
        b2 = cfg.sparse.block_size**2
        alloc = _cumulative_allocated(results["seta"][0])
        growth = GrowthCurve(seta=[a * b2 for a in alloc], independent=[(i + 1) * k * b2 for i in range(len(per_task))])
    files = write_report(out_dir, cfg.name, [t.name for t in tasks], seeds, methods, growth=growth, block_map=extras.get("block_map"))
    ppl = {n: [r.extra.get("heldout_ppl_after") for r in runs] for n, runs in results.items()}
    ability = {"heldout_ppl_base": extras.get("ppl_base"), "heldout_ppl_after": ppl, "growth_ratio": extras.get("growth_ratio")}
    click.echo(f"general ability (held-out perplexity of the generic text): {json.dumps(ability)}")
    if general is not None:
        from seta.eval.harness import DEFAULT_FEWSHOT

        ability["harness"] = {"tasks": list(general), "num_fewshot": {t: DEFAULT_FEWSHOT[t] for t in general},
                              "base": extras["general_base"],
                              "after": {n: [r.extra["general_ability"] for r in runs] for n, runs in results.items()}}
        table = _general_table(ability["harness"])
        with open(out_dir / "summary.md", "a") as f:
            f.write("\n" + table)
    (out_dir / "general_ability.json").write_text(json.dumps(ability, indent=1))
    click.echo((out_dir / "summary.md").read_text())
    click.echo(f"wrote {files}")


def _cumulative_allocated(res) -> list[int]:
    return res.extra.get("allocated_curve", [])


if __name__ == "__main__":
    main()
