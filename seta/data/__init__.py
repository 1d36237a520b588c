"""seta.data: task streams ({prompt, answer} examples), the TRACE loader, the embedded
synthetic TRACE-like stream, the tiny tokenizer, and tokenised batches. No model code."""

from seta.data.collate import (
    IGNORE_INDEX,
    MAX_ANSWER,
    MAX_PROMPT,
    TrainCollator,
    collate_train,
    encode_answer,
    encode_example,
    encode_prompt,
    generation_batch,
    tokenize_examples,
)
from seta.data.synthetic import Corpus, generic_corpus, synthetic_stream, synthetic_task
from seta.data.tokenizer import build_tiny_tokenizer, default_cache_dir
from seta.data.trace import (
    MANIFEST,
    load_trace,
    read_examples,
    read_manifest,
    stream_task_names,
    write_manifest,
    write_trace,
)
from seta.data.types import (
    METRIC_KEYS,
    SPLITS,
    TRACE_METRICS,
    TRACE_ORDER_1,
    TRACE_ORDER_2,
    Example,
    Stream,
    Task,
    resolve_order,
)

__all__ = [
    "IGNORE_INDEX", "MANIFEST", "MAX_ANSWER", "MAX_PROMPT", "METRIC_KEYS", "SPLITS", "TRACE_METRICS",
    "TRACE_ORDER_1", "TRACE_ORDER_2", "Corpus", "Example", "Stream", "Task", "TrainCollator",
    "build_tiny_tokenizer", "collate_train", "default_cache_dir", "encode_answer", "encode_example",
    "encode_prompt", "generation_batch", "generic_corpus", "load_trace", "read_examples",
    "read_manifest", "resolve_order", "stream_task_names", "synthetic_stream", "synthetic_task",
    "tokenize_examples", "write_manifest", "write_trace",
]
