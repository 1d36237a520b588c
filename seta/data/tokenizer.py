"""The tiny models' tokenizer: a byte-level BPE trained offline on the synthetic texts.

It is saved as a transformers fast tokenizer (`tokenizer.json` + `tokenizer_config.json`)
and always loaded back with `AutoTokenizer.from_pretrained(dir)`, so the tiny path and a
real model's path share the same code. Like LLaMA's tokenizer it prepends `<s>` when
`add_special_tokens=True`; `</s>` ends answers; `<pad>` pads. Byte-level BPE encodes any
text (Chinese, German, code) and decodes it back exactly.

Training data: `generic_corpus(seed=0).train` plus the prompts and answers of
`synthetic_stream(seed=0)`'s train splits. BPE training is deterministic for fixed input.
The result is cached in `<cache>/tiny-tokenizer-<fingerprint>/` where `<cache>` is
`$SETA_CACHE_DIR` (default `~/.cache/seta`) and the fingerprint hashes the training texts
and settings, so a change of generator invalidates the cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
SPECIAL_TOKENS = [PAD, BOS, EOS, UNK]  # ids 0, 1, 2, 3
TINY_VOCAB_SIZE = 1024
_FORMAT = 1  # bump when the tokenizer recipe changes
_STAMP = "seta_tokenizer.json"  # fingerprint file written next to the tokenizer


def default_cache_dir() -> Path:
    """`$SETA_CACHE_DIR`, else `~/.cache/seta`."""
    return Path(os.environ.get("SETA_CACHE_DIR", Path.home() / ".cache" / "seta"))


def tokenizer_training_texts() -> list[str]:
    """The texts the tiny tokenizer is trained on (fixed: seed 0 of the generators)."""
    from seta.data.synthetic import generic_corpus, synthetic_stream

    texts = list(generic_corpus(seed=0).train)
    for task in synthetic_stream(seed=0):
        for ex in task.train:
            texts += [ex.prompt, ex.answer]
    return texts


def _fingerprint(texts: list[str], vocab_size: int) -> str:
    h = hashlib.sha256(f"format={_FORMAT};vocab={vocab_size};".encode())
    for t in texts:
        h.update(t.encode("utf-8") + b"\0")
    return h.hexdigest()[:16]


def _train(texts: list[str], vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        min_frequency=2,
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, tok.token_to_id(BOS))]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD, unk_token=UNK,
        model_max_length=4096,
    )


def _is_built(path: Path, fingerprint: str) -> bool:
    stamp = path / _STAMP
    if not (stamp.is_file() and (path / "tokenizer.json").is_file()):
        return False
    try:
        return json.loads(stamp.read_text()).get("fingerprint") == fingerprint
    except (OSError, ValueError):
        return False


def build_tiny_tokenizer(out_dir: str | Path | None = None, vocab_size: int = TINY_VOCAB_SIZE):
    """Build (or reuse) the tiny tokenizer in `out_dir` (default: the cache) and load it.

    Returns `AutoTokenizer.from_pretrained(dir)`. A directory that already holds this exact
    tokenizer (same fingerprint) is reused, a stale one of ours is replaced, and any other
    non-empty path is refused (ValueError) rather than overwritten.
    """
    from transformers import AutoTokenizer

    if not isinstance(vocab_size, int) or vocab_size < len(SPECIAL_TOKENS) + 256:
        raise ValueError(f"vocab_size must be an int >= {len(SPECIAL_TOKENS) + 256} (bytes + specials)")
    texts = tokenizer_training_texts()
    fingerprint = _fingerprint(texts, vocab_size)
    target = Path(out_dir) if out_dir is not None else default_cache_dir() / f"tiny-tokenizer-{fingerprint}"
    if not _is_built(target, fingerprint):
        if target.exists() and not (target / _STAMP).is_file() and (target.is_file() or any(target.iterdir())):
            raise ValueError(f"{target} exists and is not a seta tokenizer directory; give a new or empty out_dir")
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tok-", dir=target.parent))
        tmp.chmod(0o755)  # mkdtemp makes it private; the cache is meant to be shared
        try:
            _train(texts, vocab_size).save_pretrained(tmp)
            (tmp / _STAMP).write_text(json.dumps({"fingerprint": fingerprint, "vocab_size": vocab_size}))
            if target.is_dir() and (target / _STAMP).is_file() and not _is_built(target, fingerprint):
                shutil.rmtree(target)  # a stale tokenizer of ours
            elif target.is_dir() and not any(target.iterdir()):
                target.rmdir()
            try:
                os.replace(tmp, target)  # atomic: readers never see a half-written tokenizer
            except OSError:
                if not _is_built(target, fingerprint):  # not a concurrent builder's result
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return AutoTokenizer.from_pretrained(str(target))
