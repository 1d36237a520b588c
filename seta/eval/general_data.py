"""The local general-ability data: MMLU, BBH and PIQA read from files, validated, capped.

Expected layout under the data directory (``.jsonl``; ``.json`` arrays, ``.parquet``, ``<split>-*.parquet``
shards and ``datasets.save_to_disk`` folders are read too)::

    DIR/mmlu/<subject>/dev.jsonl, test.jsonl   {"question": str, "choices": [4 str], "answer": 0-3 or "A"-"D"}
    DIR/bbh/<subtask>/test.jsonl                {"input": str, "target": str}
    DIR/bbh/<subtask>/fewshot.jsonl             optional exemplars, same fields
    DIR/piqa/validation.jsonl, train.jsonl      {"goal": str, "sol1": str, "sol2": str, "label": 0 or 1}

MMLU subjects named ``all`` and ``auxiliary_train`` (in cais/mmlu's export) are skipped. BBH
few-shot exemplars come from ``fewshot.jsonl``, else from lm-eval's stock ``bbh_fewshot`` task.
Nothing here needs lm-eval except that fallback; `seta.eval.harness` scores what this returns.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["BENCHMARKS", "DEFAULT_FEWSHOT", "SPLITS", "Subset", "load_general_data"]

BENCHMARKS = ("mmlu", "bbh", "piqa")
DEFAULT_FEWSHOT = {"mmlu": 5, "bbh": 3, "piqa": 0}
SPLITS = {"mmlu": ("test", "dev"), "bbh": ("test", "fewshot"), "piqa": ("validation", "train")}  # (scored, shots)


@dataclass(frozen=True)
class Subset:
    """One lm-eval task's data: an MMLU subject, a BBH subtask, or PIQA."""

    benchmark: str
    name: str
    eval_docs: list
    fewshot_docs: list = field(default_factory=list)
    description: str = ""


def _read_file(path: Path) -> list[dict]:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            return pq.read_table(path).to_pylist()
        except Exception as err:
            raise ValueError(f"{path}: not a readable parquet file ({err}); re-export it") from err
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON ({err.msg}, line {err.lineno}); "
                             "give a JSON array of objects") from err
        if not isinstance(rows, list):
            raise ValueError(f"{path}: expected a JSON array of objects, got {type(rows).__name__}")
        return rows
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{n}: not valid JSON ({err.msg}); each line must be one JSON object") from err
    return rows


def _read_split(folder: Path, split: str) -> tuple[list[dict], Path] | None:
    """Rows of ``split`` in ``folder`` and the file they came from, or None if absent."""
    for name in (f"{split}.jsonl", f"{split}.json", f"{split}.parquet"):
        if (folder / name).is_file():
            return _read_file(folder / name), folder / name
    shards = sorted(folder.glob(f"{split}-*.parquet"))
    if shards:
        return [r for s in shards for r in _read_file(s)], shards[0]
    if (folder / "dataset_dict.json").is_file():
        import datasets

        dd = datasets.load_from_disk(str(folder))
        return (dd[split].to_list(), folder / split) if split in dd else None
    return None


def _check(rows: list, where: Path, benchmark: str) -> list[dict]:
    """Validated, normalised rows of one file (errors name the file and the item)."""
    need = {"mmlu": "question, choices (4 strings), answer (0-3 or A-D)", "bbh": "input, target (strings)",
            "piqa": "goal, sol1, sol2 (strings), label (0 or 1)"}[benchmark]
    out = []
    for n, r in enumerate(rows, 1):
        bad = ValueError(f"{where}: item {n} is malformed for {benchmark}; each item needs {need}, got {str(r)[:200]}")
        if not isinstance(r, dict):
            raise bad
        try:
            if benchmark == "mmlu":
                ans = r["answer"]
                ans = "ABCD".index(ans) if isinstance(ans, str) and ans in ("A", "B", "C", "D") else int(ans)
                choices = [str(c) for c in r["choices"]]
                ok = isinstance(r["question"], str) and len(choices) == 4 and 0 <= ans < 4
                r = {"question": r["question"], "choices": choices, "answer": ans}
            elif benchmark == "bbh":
                ok = isinstance(r["input"], str) and isinstance(r["target"], (str, int))
                r = {"input": r["input"], "target": str(r["target"])}
            else:
                ok = all(isinstance(r[k], str) for k in ("goal", "sol1", "sol2")) and int(r["label"]) in (0, 1)
                r = {"goal": r["goal"], "sol1": r["sol1"], "sol2": r["sol2"], "label": int(r["label"])}
        except (KeyError, TypeError, ValueError):
            raise bad from None
        if not ok:
            raise bad
        out.append(r)
    return out


def _stock_bbh(subtask: str) -> tuple[list[dict], str] | None:
    """The stock bbh_fewshot task's exemplars and description for one of BBH's 27 subtasks."""
    import lm_eval
    import yaml

    path = Path(lm_eval.__file__).parent / "tasks" / "bbh" / "fewshot" / f"{subtask}.yaml"
    if not path.is_file():
        return None
    cfg = yaml.safe_load(path.read_text())
    return cfg["fewshot_config"]["samples"], cfg.get("description", "")


def _subset(root: Path, benchmark: str, name: str, folder: Path, k: int) -> Subset:
    eval_split, shot_split = SPLITS[benchmark]
    got = _read_split(folder, eval_split)
    if got is None:
        raise FileNotFoundError(f"{folder / (eval_split + '.jsonl')} is missing: {benchmark} needs its {eval_split} "
                                f"split there (see seta.eval.general_data for the layout under {root})")
    docs = _check(*got, benchmark)
    if not docs:
        raise ValueError(f"{got[1]} holds no items; remove the folder or fill it")
    stock = _stock_bbh(name) if benchmark == "bbh" else None
    description = stock[1] if stock else ""
    if benchmark == "mmlu":
        description = f"The following are multiple choice questions (with answers) about {name.replace('_', ' ')}.\n\n"
    shots = []
    got = _read_split(folder, shot_split) if k > 0 else None
    if got is not None:
        shots = _check(*got, benchmark)
    elif k > 0 and stock is not None:
        shots = _check(stock[0], Path(f"lm_eval bbh_fewshot_{name}"), "bbh")
    if len(shots) < k:
        raise ValueError(f"{benchmark}/{name} has {len(shots)} few-shot examples, {k} wanted: add "
                         f"{folder / (shot_split + '.jsonl')} with at least {k} items, or use fewer shots")
    return Subset(benchmark, name, docs, shots, description)


def load_general_data(data_dir, tasks: Sequence[str] = BENCHMARKS, *, limit: int | None = None,
                      num_fewshot: Mapping[str, int] | None = None) -> dict[str, list[Subset]]:
    """Read and validate the benchmarks under ``data_dir``; ``limit`` caps the items per benchmark,
    spread evenly over its subsets (the first items of each)."""
    unknown = [t for t in tasks if t not in BENCHMARKS]
    if unknown or not tasks:
        raise ValueError(f"unknown benchmark(s) {unknown or '(none given)'}; choose from {', '.join(BENCHMARKS)}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1 or None, got {limit}")
    shots = {**DEFAULT_FEWSHOT, **(num_fewshot or {})}
    root = Path(data_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"general-ability data directory {root} does not exist: lay out "
                                f"{', '.join(f'{root}/{t}/' for t in tasks)} as described in seta.eval.general_data")
    data = {}
    for bench in tasks:
        folder = root / bench
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder} does not exist: export {bench} there (see seta.eval.general_data), "
                                    f"or leave {bench} out of the benchmarks")
        if bench == "piqa":
            subsets = [_subset(root, bench, "piqa", folder, shots[bench])]
        else:
            dirs = sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith(".")
                          and not (bench == "mmlu" and d.name in ("all", "auxiliary_train")))
            if not dirs:
                sub = "<subject>/test.jsonl" if bench == "mmlu" else "<subtask>/test.jsonl"
                raise FileNotFoundError(f"{folder} has no subset folders: expected {folder}/{sub}")
            subsets = [_subset(root, bench, d.name, d, shots[bench]) for d in dirs]
        if limit is not None:
            quota, left = [0] * len(subsets), limit
            while left and any(q < len(s.eval_docs) for q, s in zip(quota, subsets)):
                for j, s in enumerate(subsets):
                    if left and quota[j] < len(s.eval_docs):
                        quota[j], left = quota[j] + 1, left - 1
            subsets = [Subset(s.benchmark, s.name, s.eval_docs[:q], s.fewshot_docs, s.description)
                       for s, q in zip(subsets, quota) if q]
        data[bench] = subsets
    return data
