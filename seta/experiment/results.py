"""The finished results of an output folder, and the reports rebuilt from all of them.

Every method/seed run that finishes writes OUT/<method>/seed<k>/result.json (the RunResult, its
seed, what run it belongs to and a hash of its data). Reports (summary.json, summary.md, plots,
general_ability.json) are rebuilt from every result.json in OUT, so a second run into the same
folder with other --methods or --seeds adds to the report instead of replacing it. Results of
another configuration are never mixed in: `check_compatible` refuses before any work starts.
OUT/base/seed<k>.json keeps the base model's scores (stream, general ability) of seed k, so a later run
into the same folder reuses them instead of measuring the base again (`read_base`, `write_base`).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from seta.experiment.choices import ABLATIONS, ALL_METHODS


def run_info(cfg, model_path, tasks) -> dict:
    """What results must share to sit in one report: preset, settings (bar the seeds), model, tasks."""
    settings = asdict(cfg)
    settings["train"].pop("seed", None)
    settings["seta"]["gate"].pop("seed", None)  # the gate seed follows the run seed
    info = {"preset": cfg.name, "settings": settings, "tasks": [t.name for t in tasks],
            "model": None if model_path is None else str(Path(model_path).resolve())}
    return json.loads(json.dumps(info, default=str))


def write_result(run_dir: Path, res, seed: int, info: dict, data: dict) -> Path:
    record = {**res.__dict__, "OP": res.OP, "BWT": res.BWT, "seed": seed, "run": info, "data": data}
    return _write_json(run_dir / "result.json", record)


def _write_json(path: Path, record: dict) -> Path:
    """Write `record` to `path` atomically (a temporary file, then a rename)."""
    tmp = path.with_suffix(".json.tmp")
    try:
        tmp.write_text(json.dumps(record, default=str, indent=1))
        tmp.replace(path)
    finally:  # a full disk leaves no .tmp behind
        tmp.unlink(missing_ok=True)
    return path


TRAINING_ONLY = ("lr", "warmup_ratio", "weight_decay", "max_grad_norm", "epochs", "batch_size", "grad_accum", "bf16",
                 "gradient_checkpointing")  # train settings that never reach the untrained base's measurements


def base_key(info: dict, data: dict, general) -> dict:
    """What the base model's measurements of one seed depend on: the preset's model, tasks and data, the
    evaluation settings (the train section bar `TRAINING_ONLY`; the method sections do not enter) and the
    general-ability benchmarks."""
    settings = info["settings"]
    kept = {k: v for k, v in settings.items() if k not in ("sparse", "seta", "ewc", "lwf")}
    kept["train"] = {k: v for k, v in settings["train"].items() if k not in TRAINING_ONLY}
    return json.loads(json.dumps({"run": {**info, "settings": kept}, "data": data, "general": general}, default=str))


def _base_path(out_dir: Path, seed: int) -> Path:
    return Path(out_dir) / "base" / f"seed{seed}.json"


def read_base(out_dir: Path, seed: int, key: dict) -> dict:
    """The base model's measurements of seed `seed` stored by an earlier run into out_dir (base scores per
    task, general ability, held-out perplexity), when that run had the same `base_key`; {} otherwise, or
    when the file is missing or unreadable (they are then measured again). A sweep may copy the file into
    each value's folder: only its key decides whether it is used."""
    try:
        record = json.loads(_base_path(out_dir, seed).read_text())
    except (OSError, ValueError):
        return {}
    return record.get("values", {}) if isinstance(record, dict) and record.get("key") == key else {}


def write_base(out_dir: Path, seed: int, key: dict, values: dict) -> None:
    """Store the base model's measurements of one seed (see `read_base`), atomically."""
    path = _base_path(out_dir, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_json(path, {"key": key, "values": values})


def read_results(out_dir: Path) -> list[dict]:
    """Every OUT/<method>/seed<k>/result.json, each with its "path"; unreadable ones raise ValueError."""
    found = []
    for path in sorted(Path(out_dir).glob("*/seed*/result.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise ValueError(f"{path} cannot be read ({err}); delete that run's folder or use another --out") from None
        found.append({**record, "path": str(path)})
    return found


def check_compatible(out_dir: Path, found: list[dict], info: dict, data_by_seed: dict[int, dict],
                     rerun: set = frozenset()) -> None:
    """ValueError naming the first earlier result that belongs to another run (one line). Results of the
    (method, seed) pairs in `rerun` are skipped: this run replaces them."""
    for r in found:
        where = Path(r["path"]).parent
        if (r.get("method"), r.get("seed")) in rerun:
            continue
        if "run" not in r:
            why = "it was written by an older run_all that did not record its settings"
        elif r["run"] != info:
            keys = [k for k in info if r["run"].get(k) != info[k]]
            why = "its " + " and ".join({"settings": "preset settings"}.get(k, k) for k in keys) + " differ from this run's"
        elif int(r["seed"]) in data_by_seed and r.get("data") != data_by_seed[int(r["seed"])]:
            why = f"its data (seed {r['seed']}) differ from this run's"
        else:
            continue
        raise ValueError(f"{out_dir} holds results of another run ({where}: {why}); use another --out, or move that "
                         "folder away to rebuild the report without it")


def _order(name: str) -> tuple:
    canon = ALL_METHODS + ABLATIONS
    return (canon.index(name) if name in canon else len(canon), name)


def _per_seed(runs, key):
    vals = [r.get(key) for r in runs]
    return None if vals[0] is None else vals


def _confusion_sum(runs):
    mats = [r.get("routing_confusion") for r in runs]
    if any(m is None for m in mats):
        return None
    return [[sum(m[i][j] for m in mats) for j in range(len(mats[0][0]))] for i in range(len(mats[0]))]


def write_reports(out_dir: Path, preset: str, found: list[dict]):
    """summary.json, summary.md, plots and general_ability.json from every finished result."""
    from seta.eval.report import BlockMap, GrowthCurve, MethodResult, write_report

    by_method: dict[str, list[dict]] = {}
    for r in sorted(found, key=lambda r: int(r["seed"])):
        by_method.setdefault(r["method"], []).append(r)
    names = sorted(by_method, key=_order)
    seeds = sorted({int(r["seed"]) for r in found})
    methods = []
    for name in names:
        runs = by_method[name]
        bases = [r.get("base_scores") or r.get("extra", {}).get("base_scores") for r in runs]
        own = [int(r["seed"]) for r in runs]
        methods.append(MethodResult(
            name=name, R=[r["R"] for r in runs], base_scores=None if any(b is None for b in bases) else bases,
            routing_acc=_per_seed(runs, "routing_acc"), trainable_params=runs[0]["trainable_params"],
            allocated_params=_per_seed(runs, "allocated_params"), wall_s=[r["wall_s"] for r in runs],
            peak_mem_mb=[r["peak_mem_mb"] for r in runs], routing_confusion=_confusion_sum(runs),
            per_task=[r["extra"].get("per_task") for r in runs] if runs[0]["extra"].get("per_task") else None,
            seeds=None if own == seeds else own,
            config=[r["config"] for r in runs] if all(r.get("config") for r in runs) else None))
    growth = block_map = None
    seta = by_method.get("seta", [None])[0]
    if seta is not None and seta["extra"].get("growth"):
        k, b2 = seta["extra"]["growth"][0], seta["run"]["settings"]["sparse"]["block_size"] ** 2
        growth = GrowthCurve(seta=[a * b2 for a in seta["extra"].get("allocated_curve", [])],
                             independent=[(i + 1) * k * b2 for i in range(len(seta["extra"]["growth"]))])
    if seta is not None and seta["extra"].get("block_map"):
        bm = seta["extra"]["block_map"]
        block_map = BlockMap(grids={n: tuple(g) for n, g in bm["grids"].items()}, owner_counts=bm["owner_counts"])
    tasks = found[0]["tasks"]
    config = found[0].get("run", {}).get("settings")  # every result shares it (check_compatible)
    files = write_report(out_dir, preset, tasks, seeds, methods, growth=growth, block_map=block_map, config=config)
    ability = _ability(out_dir, by_method, names, seeds, seta)
    return files, ability


def _ability(out_dir: Path, by_method, names, seeds, seta) -> dict:
    first = [r for runs in by_method.values() for r in runs]
    ppl_base = next((r["extra"].get("heldout_ppl_base") for r in sorted(first, key=lambda r: int(r["seed"]))), None)
    ability = {"heldout_ppl_base": ppl_base,
               "heldout_ppl_after": {n: [r["extra"].get("heldout_ppl_after") for r in by_method[n]] for n in names},
               "growth_ratio": None if seta is None else seta["extra"].get("growth_ratio")}
    with_general = [n for n in names if all(r["extra"].get("general_ability") for r in by_method[n])]
    if with_general:
        from seta.eval.general_data import DEFAULT_FEWSHOT

        base = {}
        for r in first:
            if r["extra"].get("general_base"):
                base.setdefault(int(r["seed"]), r["extra"]["general_base"])
        tasks = list(by_method[with_general[0]][0]["extra"]["general_ability"])
        ability["harness"] = {"tasks": tasks, "num_fewshot": {t: DEFAULT_FEWSHOT[t] for t in tasks},
                              "base": [base[s] for s in sorted(base)],
                              "after": {n: [r["extra"]["general_ability"] for r in by_method[n]] for n in with_general}}
        with open(out_dir / "summary.md", "a") as f:
            f.write("\n" + general_table(ability["harness"]))
    (out_dir / "general_ability.json").write_text(json.dumps(ability, indent=1, default=str))
    return ability


def general_table(harness: dict) -> str:
    """Markdown table of the harness scores (mean over seeds), base first."""
    tasks = harness["tasks"]
    first = harness["base"][0]
    head = " | ".join(f"{t.upper()} {first[t]['metric']} (n={first[t]['n']})" for t in tasks)
    rows = [("base", harness["base"])] + list(harness["after"].items())
    shots = ", ".join(f"{t} {harness['num_fewshot'][t]}" for t in tasks)
    lines = ["## General ability (lm-evaluation-harness)", "",
             f"Few-shot: {shots}; scores 0-100, mean over seeds; methods routed as at inference (no task id).", "",
             f"| Model | {head} |", "|---|" + "---:|" * len(tasks)]
    for name, runs in rows:
        lines.append(f"| {name} | " + " | ".join(f"{_mean([r[t]['score'] for r in runs]):.1f}" for t in tasks) + " |")
    return "\n".join(lines) + "\n"


def _mean(xs) -> float:
    return sum(xs) / len(xs)


def write_train_result(out: Path, res, seed: int) -> None:
    """out/result.json of one method's run (`seta train`): the RunResult's fields, OP, BWT and the seed."""
    record = {**res.__dict__, "OP": res.OP, "BWT": res.BWT, "seed": seed}
    (out / "result.json").write_text(json.dumps(record, default=str, indent=1))
