"""reproduce/run_all.py: failures outside the data end with one line that says what to do, non-zero exit."""

import os
import signal
import subprocess
import sys
import textwrap

import pytest
from click.testing import CliRunner

from reproduce_helpers import ROOT


@pytest.fixture(scope="module")
def run_all():
    from seta.experiment import command  # reproduce/run_all.py's code: patch it where it lives

    return command


def _env():
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


def test_argument_errors_come_before_torch_is_imported():
    code = textwrap.dedent(f"""
        import runpy, sys
        sys.argv = ["run_all.py", "--seeds", "-1"]
        try:
            runpy.run_path({str(ROOT / "reproduce" / "run_all.py")!r}, run_name="__main__")
        except SystemExit as e:
            print("exit", e.code)
        print("heavy", sorted(m for m in ("torch", "transformers", "peft") if m in sys.modules))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=300)
    assert "exit 2" in out.stdout and "heavy []" in out.stdout, out.stdout + out.stderr
    assert "seeds must lie in" in out.stderr


@pytest.mark.parametrize("error, message", [
    (RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 512 vs 448; PytorchStreamWriter "
                  "failed writing file data/3: file write failed, No space left on device"), "no space left on the device"),
    (OSError(28, "No space left on device"), "no space left on the device"),
    (type("SafetensorError", (Exception,), {})("Error while serializing: I/O error: No space left on device (os "
                                               "error 28)"), "no space left on the device"),
    (PermissionError(13, "Permission denied", "/ro/out/seta/seed0/train.log"), "cannot write to /ro/out/seta/seed0/train.log"),
])
def test_disk_and_permission_failures_mid_run_are_one_line(run_all, monkeypatch, tmp_path, error, message):
    def fail(*a, **k):
        raise error

    monkeypatch.setattr(run_all, "run", fail)
    result = CliRunner().invoke(run_all.main, ["--methods", "seta", "--out", str(tmp_path / "o")])
    assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


_WORKER = """
import signal, sys, time
signal.signal(signal.SIGINT, signal.default_int_handler)  # as at a terminal: a shell's background job inherits SIGINT ignored
sys.path.insert(0, {tests!r})
from seta.experiment import command as run_all  # reproduce/run_all.py's code
from seta.data import synthetic_stream
from seta.models import build_tiny_model
from seta.train import loop
from seta.train.checkpoint import save_checkpoint

run_all._load_stream = lambda cfg, data_dir, seed: list(synthetic_stream(seed=0, n_train=4, n_eval=2, n_test=2))[:2]
run_all._base_factory = lambda cfg, path, tok, cache, progress=True: (lambda: build_tiny_model("llama", tokenizer=tok))

def training(self, resume=False, base_scores=None, stop_after=None, force_resume=False):
    self.out.mkdir(parents=True, exist_ok=True)
    save_checkpoint({{"next_task": 1}}, self.ckpt_path)  # task 0 finished
    print("TRAINING", flush=True)
    time.sleep(600)

loop.ContinualTrainer.run = training
run_all.main(["--methods", "seqft-sparse", "--out", {out!r}, "--no-progress"])
"""


@pytest.mark.slow
@pytest.mark.parametrize("sig, code, name", [(signal.SIGTERM, 143, "SIGTERM"), (signal.SIGINT, 130, "SIGINT")])
def test_a_signal_mid_task_says_the_run_can_be_resumed(tmp_path, sig, code, name):
    script = _WORKER.format(tests=str(ROOT / "tests" / "reproduce"), out=str(tmp_path / "o"))
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_env())
    try:
        for line in proc.stdout:
            if line.strip() == "TRAINING":
                break
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == code, err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"Error: interrupted ({name}) during seqft-sparse (seed 0)")
    assert "is complete (tasks 0..0 done)" in last and "--resume" in last
