"""The README's code blocks name only commands, options, files and Python names that exist.

Shell blocks: every `seta <sub>` and `python reproduce/<x>.py` line is parsed by the command's own click
parser (an unknown option or a bad choice fails), and every repository path it names must exist.
Python blocks: every import resolves and every attribute used on an imported class exists; the block
that trains with `get_seta_model` is run on the tiny model. The code map's folders must exist.
"""

import ast
import importlib
import importlib.util
import re
import shlex
import subprocess
import sys
from pathlib import Path

import click
import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
REPO_DIRS = ("scripts/", "reproduce/", "benchmarks/", "seta/", "docs/", "tests/", "examples/")
API_NAMES = ("SetaConfig", "get_seta_model")  # the library API: checked where the seta package has it


def code_blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of every fenced block."""
    return [(m.group(1), m.group(2)) for m in re.finditer(r"^```(\w*)\n(.*?)^```", text, re.S | re.M)]


def shell_commands(body: str, console: bool = False) -> list[list[str]]:
    """Each command of a shell block as argv: continuations joined, comments dropped, split at && ; |.
    console: only the lines after a `$ ` prompt (the rest is output)."""
    commands = []
    for line in body.replace("\\\n", " ").splitlines():
        if console and not line.startswith("$ "):
            continue
        line = line.removeprefix("$ ")
        words = shlex.split(line, comments=True)
        current: list[str] = []
        for w in words + [";"]:
            if w in ("&&", ";", "|", "||"):
                if current:
                    commands.append(current)
                current = []
            else:
                current.append(w)
    return commands


def _script(name: str):
    sys.path.insert(0, str(ROOT / "reproduce"))
    spec = importlib.util.spec_from_file_location(f"readme_{name}", ROOT / "reproduce" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def command_problem(argv: list[str]) -> str | None:
    """What is wrong with one README command (None: it parses), by the command's own parser."""
    while argv and re.fullmatch(r"[A-Z_]+=\S*", argv[0]):  # environment assignments
        argv = argv[1:]
    if not argv:
        return None
    for word in argv:
        if word.startswith(REPO_DIRS) and not (ROOT / word.split(":")[0]).exists():
            return f"{word}: no such file in the repository"
    if argv[0] == "seta":
        from seta.cli import main

        with main.make_context("seta", [argv[1], "--help"], resilient_parsing=True) as ctx:
            sub = main.get_command(ctx, argv[1]) if len(argv) > 1 else None
        if sub is None:
            return f"seta has no sub-command {argv[1:2]}"
        command, args, name = sub, argv[2:], f"seta {argv[1]}"
    elif argv[0] == "python" and len(argv) > 1 and argv[1].startswith("reproduce/"):
        command, args, name = _script(Path(argv[1]).stem), argv[2:], argv[1]
    else:
        return None  # bash, pytest, torchrun's own options: their paths were checked above
    try:
        command.make_context(name, list(args))
    except click.exceptions.Exit:
        return None
    except click.ClickException as err:
        return f"{name}: {err.format_message()}"
    return None


def _shell(path: Path):
    return [c for lang, body in code_blocks(path.read_text()) if lang in ("bash", "sh", "console")
            for c in shell_commands(body, console=lang == "console")]


def test_the_checker_reports_an_unknown_option_a_bad_choice_and_a_missing_file():
    cmds = shell_commands("python reproduce/run_all.py --quick --no-such 1  # note\n"
                          "seta run --preset nope && bash scripts/missing.sh\nseta frobnicate x\n")
    problems = [command_problem(c) for c in cmds]
    assert "No such option '--no-such'" in problems[0]
    assert "'nope' is not one of" in problems[1]
    assert problems[2] == "scripts/missing.sh: no such file in the repository"
    assert problems[3] == "seta has no sub-command ['frobnicate']"
    assert command_problem(shell_commands("python reproduce/run_all.py --quick --seeds 0,1")[0]) is None


@pytest.mark.parametrize("argv", _shell(README), ids=lambda argv: " ".join(argv)[:60])
def test_every_readme_shell_command_parses(argv):
    assert command_problem(argv) is None, command_problem(argv)


@pytest.mark.parametrize("argv", _shell(ROOT / "docs" / "usage.md"), ids=lambda argv: " ".join(argv)[:60])
def test_every_usage_guide_shell_command_parses(argv):
    assert command_problem(argv) is None, command_problem(argv)


def test_the_readme_keeps_the_suite_command_ci_runs():
    assert ". .venv/bin/activate && python -m pytest -q" in README.read_text()


def _python_blocks():
    return [body for lang, body in code_blocks(README.read_text()) if lang == "python"]


def _needs_missing_api(tree: ast.AST) -> str | None:
    import seta

    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "seta":
            missing = [a.name for a in node.names if a.name in API_NAMES and not hasattr(seta, a.name)]
            if missing:
                return f"the seta package has no {', '.join(missing)} yet (the library API)"
    return None


@pytest.mark.parametrize("index", range(len(_python_blocks())))
def test_python_blocks_import_and_use_only_names_that_exist(index):
    tree = ast.parse(_python_blocks()[index])
    reason = _needs_missing_api(tree)
    if reason:
        pytest.skip(reason)
    imported = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            module = importlib.import_module(node.module)
            for alias in node.names:
                assert hasattr(module, alias.name), f"{node.module} has no {alias.name}"
                imported[alias.asname or alias.name] = getattr(module, alias.name)
    instances = {}  # x = Cls(...) or x = Cls.factory(...): x is taken to be a Cls
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call) and len(node.targets) == 1:
            func, target = node.value.func, node.targets[0]
            owner = func.value if isinstance(func, ast.Attribute) else func
            if isinstance(target, ast.Name) and isinstance(owner, ast.Name) and isinstance(imported.get(owner.id), type):
                instances[target.id] = imported[owner.id]
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            cls = imported.get(node.value.id) if isinstance(imported.get(node.value.id), type) else instances.get(node.value.id)
            if cls is not None:
                assert hasattr(cls, node.attr), f"{cls.__name__} has no attribute {node.attr!r}"


@pytest.mark.slow
def test_the_api_block_runs_on_the_tiny_model(tmp_path):
    blocks = [b for b in _python_blocks() if "get_seta_model" in b]
    assert blocks, "the README shows the Python API"
    reason = _needs_missing_api(ast.parse(blocks[0]))
    if reason:
        pytest.skip(reason)
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HOME": str(Path.home())}
    done = subprocess.run([sys.executable, "-c", blocks[0]], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "trainable params" in done.stdout and (tmp_path / "my-seta").is_dir()


def _code_map_paths():
    blocks = [b for lang, b in code_blocks(README.read_text()) if lang == "" and "seta/core/" in b]
    assert blocks, "the README has a code map"
    return [p for line in blocks[0].splitlines() for p in re.findall(r"(?:^|\s|, )((?:seta|reproduce|benchmarks)/[\w./]*)", line)]


@pytest.mark.parametrize("path", _code_map_paths())
def test_the_code_map_names_existing_files(path):
    import seta

    if path == "seta/api/" and not hasattr(seta, "get_seta_model"):
        pytest.skip("the seta package has no get_seta_model yet (the library API)")
    assert (ROOT / path).exists(), f"README code map: {path} does not exist"
