"""Prompts for `seta generate`: the PROMPT arguments and `--file` JSONL lines of {"prompt": str, ...} (other
keys pass through), checked before any model is loaded (UTF-8 text), and the answer budget checked
against the model's positions once it is."""

from __future__ import annotations

import json
import sys
from pathlib import Path

__all__ = ["check_answer_budget", "check_prompts", "read_prompts_jsonl"]


def _not_text(prompt: str) -> int | None:
    """The index of the first character that is not UTF-8 text (a lone surrogate, e.g. an undecodable byte of
    the command line), else None."""
    try:
        prompt.encode("utf-8")
    except UnicodeEncodeError as err:
        return err.start
    return None


def _not_text_error(where: str, at: int) -> ValueError:
    return ValueError(f"{where}: the prompt is not UTF-8 text (an undecodable byte or lone surrogate at character "
                      f"{at}); give UTF-8 text")


def check_prompts(prompts: list[str]) -> None:
    """ValueError naming the PROMPT argument that is not UTF-8 text."""
    for k, prompt in enumerate(prompts, 1):
        bad = _not_text(prompt)
        if bad is not None:
            raise _not_text_error(f"PROMPT argument {k}", bad)


def read_prompts_jsonl(path: str) -> list[dict]:
    """Lines of {"prompt": str, ...}; blank lines skipped; ValueError naming the file and line otherwise."""
    try:
        text = sys.stdin.buffer.read().decode("utf-8") if path == "-" else Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path} is not UTF-8 text (byte {err.start}); save it as UTF-8") from None
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except RecursionError:
            raise ValueError(f"{path} line {n}: its JSON nests too deeply") from None
        except ValueError as err:
            raise ValueError(f"{path} line {n}: not valid JSON ({err.args[0].split(':')[0]})") from None
        if not isinstance(row, dict) or not isinstance(row.get("prompt"), str):
            raise ValueError(f'{path} line {n}: expected an object with a "prompt" string, e.g. {{"prompt": "..."}}')
        bad = _not_text(row["prompt"])
        if bad is not None:
            raise _not_text_error(f"{path} line {n}", bad)
        rows.append(row)
    return rows


def check_answer_budget(adapter, max_new_tokens: int, prompts: list[str]) -> None:
    """ValueError unless the longest prompt (as the adapter encodes it) plus max_new_tokens fits the model's
    positions: generating past them would answer from positions the model never saw."""
    from seta.models.loading import max_positions

    limit = max_positions(adapter.seta)
    if limit is None:
        return
    longest = max(len(ids) for ids in adapter._encode(prompts))
    if longest + max_new_tokens > limit:
        raise ValueError(f"--max-new-tokens {max_new_tokens}: the longest prompt takes {longest} of the model's "
                         f"{limit} positions, which leaves room for at most {max(limit - longest, 0)} new tokens; "
                         "lower --max-new-tokens")
