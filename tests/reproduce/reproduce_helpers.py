"""Load the click scripts of reproduce/ as modules (they are scripts, not a package)."""

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def load_script(name: str, module_name: str | None = None):
    """reproduce/<name>.py as a module (reproduce/ first on sys.path, as when run as a script)."""
    sys.path.insert(0, str(ROOT / "reproduce"))
    spec = importlib.util.spec_from_file_location(module_name or name, ROOT / "reproduce" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
