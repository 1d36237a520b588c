"""What the command lines say when a run cannot go on: one line that says what to do, non-zero exit.

`error_boundary` is the one boundary of every entry point (`seta ...`, reproduce/run_all.py and
sweep.py, `seta-lm-eval`): the package's own errors (ValueError and its ConfigError, FileNotFoundError)
and the library errors a damaged input or a full disk raises (UnicodeError, JSON/YAML errors,
safetensors' SafetensorError, OSError on a path) become one `Error: ...` line, exit 1; anything else is
a bug and keeps its traceback. The line is printable: control characters, ANSI escapes and bidi
overrides are shown escaped.

No torch or transformers here: argument checks run in milliseconds, before anything heavy is imported.
"""

from __future__ import annotations

import errno
import functools
import shutil
import signal
import tempfile
import unicodedata
from pathlib import Path

import click

EXIT_SIGINT, EXIT_SIGTERM = 130, 143


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the run is, so it unwinds like Ctrl-C (atomic writes clean up after themselves)."""


class RunInterrupted(Exception):
    """A signal stopped the run of `method` for `seed`, whose checkpoints live in `run_dir`."""

    def __init__(self, run_dir: Path | None, method: str | None, seed: int | None, terminated: bool):
        super().__init__(f"interrupted in {run_dir}")
        self.run_dir, self.method, self.seed, self.terminated = run_dir, method, seed, terminated


def install_sigterm_handler() -> None:
    def on_sigterm(signum, frame):
        raise Terminated()

    signal.signal(signal.SIGTERM, on_sigterm)


def check_dir_option(path, option: str, what: str) -> None:
    """BadParameter unless `path` is an existing directory (says which of the two it is not)."""
    p = Path(path)
    if not p.exists():
        raise click.BadParameter(f"{what} {path} does not exist", param_hint=option)
    if not p.is_dir():
        raise click.BadParameter(f"{what} {path} is a file, not a directory", param_hint=option)


def check_writable(out_dir: Path, option: str = "--out", advice: str = "choose a writable folder") -> None:
    """BadParameter (naming `option`) unless out_dir is (or can be made) a writable folder; nothing is created in it."""
    p = Path(out_dir)
    if p.exists() and not p.is_dir():
        raise click.BadParameter(f"{p} is a file, not a directory; choose a folder", param_hint=option)
    probe = p
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise click.BadParameter(f"cannot create {p}: {probe} is a file; choose another folder", param_hint=option)
    try:
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as err:
        where = p if probe == p else f"{p} (in {probe})"
        raise click.BadParameter(f"cannot write to {where}: {err.strerror or err}; {advice}", param_hint=option) from None


def _free_bytes(path: Path) -> int | None:
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return shutil.disk_usage(p).free
    except OSError:
        return None


def _no_space(err: BaseException, out_dir: Path) -> bool:
    if (isinstance(err, OSError) and err.errno == errno.ENOSPC) or "No space left on device" in str(err):
        return True  # OSError, or safetensors' SafetensorError '... No space left on device (os error 28)'
    if "inline_container" in str(err) or "PytorchStreamWriter" in str(err):  # torch.save's 'enforce fail'
        free = _free_bytes(out_dir)
        return free is not None and free < 256 * 2**20
    return False


def _library_input_error(err: BaseException) -> bool:
    """An error of a library reading a damaged file: safetensors' SafetensorError, PyYAML's YAMLError."""
    module = type(err).__module__ or ""
    return module.split(".")[0] in ("safetensors", "yaml") and isinstance(err, Exception)


def user_message(err: BaseException, out_dir: Path | None = None) -> str | None:
    """The one line for a failure the user can fix (a damaged input, disk full, an unwritable or missing
    path), else None (a bug: the caller lets its traceback through). out_dir: the run's output folder,
    named for a full disk (runs can be resumed)."""
    if out_dir is not None and _no_space(err, out_dir):
        return (f"no space left on the device of {out_dir}: free some space (or choose another --out), then rerun "
                "the same command with --resume; finished tasks are kept")
    if _no_space(err, Path.cwd()):
        where = getattr(err, "filename", None) or "the output folder (--out)"
        return f"no space left on the device of {where}: free some space (or choose another --out), then rerun"
    if isinstance(err, OSError) and err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        where = err.filename or out_dir or "a file"
        return f"cannot write to {where} ({err.strerror}); choose a writable folder"
    if isinstance(err, (FileNotFoundError, NotADirectoryError, IsADirectoryError)) and err.filename is None:
        return str(err)  # the package's own, with its message
    if isinstance(err, OSError):
        where = err.filename or out_dir
        tail = "; fix it, then rerun the same command with --resume" if out_dir is not None else "; fix it and rerun"
        return f"{err.strerror or err} ({where}){tail}" if where else f"{err}{tail}"
    if isinstance(err, ValueError):  # the package's own, ConfigError, UnicodeError, json's JSONDecodeError
        return str(err)
    if _library_input_error(err):
        return f"a file could not be read or written ({type(err).__name__}: {err}); check the files given"
    return None


def printable(text: str) -> str:
    """`text` on one line with every unprintable character (control, ANSI escape, bidi override, lone
    surrogate) shown as its escape, so that a message cannot rewrite the terminal."""
    out = []
    for ch in " ".join(str(text).split()):
        if ch.isprintable() and unicodedata.category(ch) not in ("Cf", "Cs", "Co"):
            out.append(ch)
        else:
            out.append(ch.encode("unicode_escape", "backslashreplace").decode("ascii"))
    return "".join(out)


def error_boundary(fn):
    """Decorator of an entry point: a user's failure (`user_message`) ends with one `Error: ...` line and
    exit 1 (click's ClickException); click's own errors and a bug (traceback) pass through unchanged."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (click.ClickException, click.exceptions.Exit, click.Abort, SystemExit, KeyboardInterrupt):
            raise
        except Exception as err:  # noqa: BLE001  (mapped below; anything else is re-raised)
            message = user_message(err)
            if message is None:
                raise
            raise click.ClickException(printable(message)) from None

    return wrapper


def interrupted_message(err: RunInterrupted) -> str:
    """Says whether --resume can continue, after checking that the last checkpoint opens."""
    from seta.train.checkpoint import load_checkpoint
    from seta.train.loop import CHECKPOINT_NAME

    sig = "SIGTERM" if err.terminated else "SIGINT"
    if err.run_dir is None:
        return f"interrupted ({sig}) before any training started; rerun the same command"
    what = f"{err.method} (seed {err.seed})"
    ckpt = Path(err.run_dir) / CHECKPOINT_NAME
    if not ckpt.exists():
        return (f"interrupted ({sig}) during {what}, before its first task finished; rerun the same command with "
                "--resume to continue (finished methods are kept, this one starts afresh)")
    try:
        done = int(load_checkpoint(ckpt)["next_task"])
    except (ValueError, KeyError, OSError) as e:
        return f"interrupted ({sig}) during {what}; its checkpoint {ckpt} does not open ({e}); delete it and rerun"
    return (f"interrupted ({sig}) during {what}; its checkpoint {ckpt} is complete (tasks 0..{done - 1} done): "
            "rerun the same command with --resume to continue")


def exit_code(err: RunInterrupted) -> int:
    return EXIT_SIGTERM if err.terminated else EXIT_SIGINT


def fail(message: str, code: int = 1):
    """Print 'Error: message' on stderr as one line and exit with `code` (click's format for errors)."""
    click.echo(f"Error: {printable(message)}", err=True)
    raise SystemExit(code)
