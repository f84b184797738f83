"""Import every module of the installed pydarknet and every public name (run from outside the checkout).

A module or data directory the wheel lacks fails here, not at a user's first command.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path

import pydarknet

if Path.cwd() in Path(pydarknet.__file__).parents:
    sys.exit(f"pydarknet imported from the working directory ({pydarknet.__file__}), not from the install")
# (__main__ runs the CLI when imported)
modules = [m.name for m in pkgutil.walk_packages(pydarknet.__path__, "pydarknet.") if m.name != "pydarknet.__main__"]
for name in modules:
    importlib.import_module(name)
for name in pydarknet.__all__:
    getattr(pydarknet, name)
print(f"{pydarknet.__file__}: {len(modules)} modules and {len(pydarknet.__all__)} public names import")
