"""Prompts for `seta generate --file`: JSONL lines of {"prompt": str, ...} (other keys pass through)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

__all__ = ["read_prompts_jsonl"]


def read_prompts_jsonl(path: str) -> list[dict]:
    """Lines of {"prompt": str, ...}; blank lines skipped; ValueError naming the file and line otherwise."""
    text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as err:
            raise ValueError(f"{path} line {n}: not valid JSON ({err.args[0].split(':')[0]})") from None
        if not isinstance(row, dict) or not isinstance(row.get("prompt"), str):
            raise ValueError(f'{path} line {n}: expected an object with a "prompt" string, e.g. {{"prompt": "..."}}')
        rows.append(row)
    return rows
