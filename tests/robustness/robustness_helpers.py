"""What every damaged input must end with: a non-zero exit, exactly one `Error:` line, no traceback, no
partial output, nothing changed outside the test's folder; in a subprocess, bounded memory and time."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from seta.cli import main
from seta.inference.adapter_files import files_sha256
from seta.inference.card import CARD_NAME


def tree(root: Path) -> dict:
    """{relative path: (size, mtime_ns)} of every file under root."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(Path(root).rglob("*")) if p.is_file()}


def assert_one_error(output: str, exit_code: int, exception=None, expect: str | None = None) -> str:
    """The line `Error: ...` of a failed command, after checking it is the only one and no traceback was printed."""
    assert exit_code not in (0, None), output
    assert exception is None or isinstance(exception, SystemExit), repr(exception)
    assert "Traceback" not in output, output
    errors = [line for line in output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, output
    assert "\x1b" not in output and "\u202e" not in output, output
    if expect is not None:
        assert expect in errors[0], (expect, errors[0])
    return errors[0]


def run_in_process(args, expect: str | None = None, input=None) -> str:
    result = CliRunner().invoke(main, [str(a) for a in args], input=input)
    return assert_one_error(result.output, result.exit_code, result.exception, expect)


def run_bounded(args, cwd, expect: str | None = None, memory_gib: int = 3, timeout: int = 120, env=None) -> str:
    """`python -m seta.cli ARGS` in a subprocess limited to memory_gib of address space and `timeout` seconds."""
    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (memory_gib << 30, memory_gib << 30))

    r = subprocess.run([sys.executable, "-m", "seta.cli", *[os.fsencode(str(a)) if isinstance(a, Path) else a
                                                            for a in args]],
                       cwd=cwd, capture_output=True, timeout=timeout, preexec_fn=limit, env=env)
    return assert_one_error((r.stdout + r.stderr).decode("utf-8", "replace"), r.returncode, None, expect)


def edit_card(folder: Path, change) -> None:
    card = json.loads((folder / CARD_NAME).read_text())
    change(card)
    (folder / CARD_NAME).write_text(json.dumps(card))


def rehash(folder: Path) -> None:
    """Record the folder's current file hashes in its card (a damage the hashes alone would not catch)."""
    edit_card(folder, lambda c: c.__setitem__("sha256", files_sha256(folder)))
