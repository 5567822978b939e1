"""The functions source of ``bench/latency.py``'s local stack: the product's entry points,
unchanged, and the bare ``receipt`` and ``bare`` functions of ``_bare_functions.py`` beside them.

functions-framework loads this file by path with its folder (``bench/``) on ``sys.path``, so
``_bare_functions`` imports as a module of its own; the product's ``functions/main.py`` is loaded
by path under its own name, exactly as the stack would serve it.
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

from _bare_functions import bare, receipt

from distillery.local.stack import ROUTES, default_functions_source

PRODUCT_MODULE = "distillery_functions_main"


def _load_product() -> ModuleType:
    """The product's ``functions/main.py`` as a module.

    Raises:
        ImportError: it cannot be loaded.
    """
    source = default_functions_source()
    spec = importlib.util.spec_from_file_location(PRODUCT_MODULE, source)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load the product's functions from {source}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[PRODUCT_MODULE] = module
    spec.loader.exec_module(module)
    return module


_product = _load_product()
# Every routed entry point of the product, under its own name (the stack's --target).
globals().update({route.target: getattr(_product, route.target) for route in ROUTES})

__all__ = ["bare", "receipt", *(route.target for route in ROUTES)]
