"""One method over one stream, as `seta run` runs each (method, seed) and `seta train` runs one:
train, save the self-describing adapter (`seta.inference.card`), return the result.

`continue_adapter` adds tasks to a saved SETA adapter: the stream goes on from where it stopped
(task ids, blocks, ownership, anchors, gate and routing statistics as saved), the earlier tasks'
data reloaded from where the card says it came from, so that R still has every column.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path


LOAD_KEYS = ("max_train", "max_eval", "max_test")  # what `seta.experiment.inputs._load_stream` passes load_trace


def stream_sources(cfg, data_dir, seed: int) -> dict:
    """Where the tasks of `cfg`'s stream come from, as the card records it (one dict for every task): a
    stream directory with the split sizes load_trace was given, or the synthetic stream's arguments."""
    if data_dir is not None:
        load = {k: v for k, v in cfg.stream.items() if k in LOAD_KEYS}
        return {"data_dir": str(Path(data_dir).resolve()), "load": load, "seed": seed}
    return {"synthetic": {k: v for k, v in cfg.stream.items() if k not in ("order", "tasks")}, "seed": seed}


def check_block_size(model, sparse) -> None:
    """ValueError unless sparse.block_size is at most the largest dimension of the target matrices: a larger
    block would be padded, training (and counting) parameters that do not exist."""
    dims = [getattr(m, attr) for name, m in model.named_modules() if name.rsplit(".", 1)[-1] in sparse.target_modules
            for attr in ("in_features", "out_features") if isinstance(getattr(m, attr, None), int)]
    if dims and sparse.block_size > max(dims):
        raise ValueError(f"sparse.block_size {sparse.block_size} is larger than every target matrix of the model "
                         f"(largest dimension {max(dims)}); set sparse.block_size to at most {max(dims)}")


def load_tasks(source: dict, names: list[str]) -> list:
    """The tasks `names` (in this order) from a card's task source."""
    from seta.data import load_trace, synthetic_stream

    if "data_dir" in source:
        if not Path(source["data_dir"]).is_dir():
            raise FileNotFoundError(f"the data of tasks {names} were read from {source['data_dir']}, which no longer "
                                    "exists; put the stream directory back there")
        load = {k: v for k, v in source.get("load", {}).items() if k in LOAD_KEYS}  # what the run loaded with
        return list(load_trace(source["data_dir"], tasks=names, seed=source["seed"], **load))
    return list(synthetic_stream(seed=source["seed"], order=list(names), **source["synthetic"]))


def train_method(name: str, factory, tokenizer, tasks: list, cfg, run_dir: Path, *, seed: int, sources: list[dict],
                 resume=False, force_resume=False, base_scores=None, progress=True, initial=None, tensorboard=False):
    """Train method `name` over `tasks` into run_dir (log, checkpoint, run_dir/adapter with its card).

    factory(): a fresh base; `factory.source` (if set) describes it for the card. cfg: a preset.
    sources: one card source per task. initial: a (card, adapter dir) to continue from (`continue_adapter`).
    tensorboard: the metrics also as TensorBoard scalars. Under torchrun only rank 0 saves the adapter.
    Returns (RunResult, strategy)."""
    from seta.train import distributed as dist
    from seta.inference.card import base_hashes, write_card
    from seta.train.checkpoint import seed_everything
    from seta.train.loop import ContinualTrainer
    from seta.train.strategies import build_strategy

    train_cfg = replace(cfg.train, seed=seed)
    seed_everything(seed)  # what building draws (peft's LoRA init) must not depend on what ran before in the process
    base = factory()
    check_block_size(base, cfg.sparse)
    hashes = base_hashes(base)
    seta_cfg = replace(cfg.seta, gate=replace(cfg.seta.gate, seed=seed))  # the gate's seed follows the run's
    strategy = build_strategy(name, base, tokenizer, cfg.sparse, seta=seta_cfg, ewc=cfg.ewc, lwf=cfg.lwf)
    trainer = ContinualTrainer(strategy, tasks, train_cfg, run_dir, progress=progress, meta={"preset": cfg.name},
                               tensorboard=tensorboard)
    start = 0
    if initial is not None:
        card, adapter_dir = initial
        strategy.api.load_saved_state(adapter_dir)
        start = len(card["tasks"])
    more = {"start_task": start} if start else {}
    res = trainer.run(resume=resume, base_scores=base_scores, force_resume=force_resume, **more)
    if dist.world()[0] != 0:
        return res, strategy
    from seta.train.strategies.sparse import SparseBlocks

    if isinstance(strategy, SparseBlocks):
        adapter = run_dir / "adapter"
        strategy.save_adapter(adapter)
        source = getattr(factory, "source", None)
        card = {"method": name, "preset": cfg.name,
                "base": None if source is None else {**source, **hashes,
                                                     "model_type": getattr(base.config, "model_type", None)},
                "tasks": [{"name": t.name, "metric": t.metric, "max_new_tokens": trainer.max_new_tokens(j),
                           "stop": trainer.answer_stop(j), "source": sources[j]} for j, t in enumerate(tasks)],
                "train_config": train_cfg.to_dict(),
                **{f"{section}_config": value for section, value in strategy.config_dict().items()},
                "prompt_cap": trainer.prompt_cap}
        write_card(adapter, card)
    else:
        strategy.save_adapter(run_dir / "adapter")
    return res, strategy


def continue_adapter(adapter_dir, new_tasks: list, new_sources: list[dict], out_dir: Path, *, progress=True,
                     epochs: int | None = None):
    """Add `new_tasks` to the SETA adapter in adapter_dir (left untouched): train them after its tasks, into
    out_dir (out_dir/adapter: the grown adapter). Returns (RunResult, strategy)."""
    from seta.experiment.presets import Preset
    from seta.inference.adapter import base_factory_from_card, load_card_tokenizer
    from seta.inference.card import read_card
    from seta.inference.card import card_configs
    from seta.train.config import TrainConfig
    from seta.train.strategies import strategy_class

    card = read_card(adapter_dir)
    from seta.inference.adapter_files import check_adapter
    from seta.train.strategies.seta import Seta

    if not issubclass(strategy_class(card["method"]), Seta):
        raise ValueError(f"{adapter_dir} is an adapter of {card['method']}; tasks can be added to SETA adapters only")
    check_adapter(adapter_dir, card)
    old_names = [t["name"] for t in card["tasks"]]
    clash = sorted(set(old_names) & {t.name for t in new_tasks})
    if clash:
        raise ValueError(f"the adapter already has task(s) {clash}; add tasks it does not have (it has {old_names})")
    old_tasks = []
    for entry in card["tasks"]:  # each from its own source, in the adapter's order
        old_tasks += load_tasks(entry["source"], [entry["name"]])
    train = TrainConfig.from_dict(card["train_config"])
    n_old, n_new = len(old_tasks), len(new_tasks)
    more = epochs or int(train.epochs[-1])
    train = replace(train, epochs=tuple(train.epochs_for(i) for i in range(n_old)) + (more,) * n_new)
    sparse, seta_cfg = card_configs(card, Path(adapter_dir) / "seta_adapter.json")
    cfg = Preset(name=card.get("preset") or "adapter", train=train, sparse=sparse, seta=seta_cfg)
    tokenizer = load_card_tokenizer(card)
    factory = base_factory_from_card(card)
    sources = [t["source"] for t in card["tasks"]] + list(new_sources)
    res, strategy = train_method(card["method"], factory, tokenizer, old_tasks + list(new_tasks), cfg, Path(out_dir),
                                 seed=train.seed, sources=sources, progress=progress, initial=(card, Path(adapter_dir)))
    earlier = Path(adapter_dir).parent / "result.json"  # the rows of R the adapter's own run measured
    if earlier.is_file():
        import json

        old_R = json.loads(earlier.read_text()).get("R", [])
        if len(old_R) == n_old and all(len(row) == n_old for row in old_R):
            res.R[:n_old] = [list(row) + [float("nan")] * n_new for row in old_R]
    return res, strategy
