"""Import a repository script (tools/*.py, benchmarks/*.py) as a module, for tests that call its functions."""

from __future__ import annotations

import importlib.util
import os
import sys
from types import ModuleType

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_script(relative_path: str, module_name: str) -> ModuleType:
    """Execute `REPO/relative_path` as module `module_name`, registered in sys.modules (dataclasses and pickling
    look their module up there)."""
    spec = importlib.util.spec_from_file_location(module_name, os.path.join(REPO, relative_path))
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module
