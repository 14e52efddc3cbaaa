"""``google.cloud.compute_v1`` without loading the 119 service clients vmbot never uses.

The package's ``__init__`` imports a client for every Compute Engine service
(123 of them) and lists them all in ``__lazy_modules__``: its authors mean them
to load on first use, but only Python 3.15's explicit lazy imports (PEP 810)
honour that. On the Python we run they all load at start-up, which costs about
40 MB of the bot's resident memory (measured with ``python -m bench``: about a
quarter of the whole process).

So, before anything imports the package, we register a package module that
does what ``__lazy_modules__`` asks for: a ``FooClient`` name imports
``services.foo`` when first used, and every other name comes from ``types``
(the request and resource messages, which the clients need anyway). Everything
then behaves as the real package does, for gce.py, the stand-in tests and any
later ``from google.cloud import compute_v1``. If the real package was imported
first, it is left as it is.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
from types import ModuleType
from typing import Any

import google.cloud

PACKAGE = "google.cloud.compute_v1"
_CAMEL_BOUNDARY = re.compile(r"(?<!^)(?=[A-Z])")


def _service_module(client_name: str) -> str:
    """"ZoneOperationsClient" -> "google.cloud.compute_v1.services.zone_operations" (the package's own naming)."""
    service = client_name.removesuffix("Client")
    return f"{PACKAGE}.services.{_CAMEL_BOUNDARY.sub('_', service).lower()}"


def _lazy_package() -> ModuleType:
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.submodule_search_locations is None:
        raise ImportError(f"{PACKAGE} is not installed")
    package = ModuleType(PACKAGE, "google-cloud-compute, with its service clients loaded on first use")
    package.__path__ = list(spec.submodule_search_locations)
    package.__spec__ = spec
    package.__file__ = spec.origin
    package.__package__ = PACKAGE

    def __getattr__(name: str) -> Any:  # noqa: N807 - PEP 562 module attribute hook
        if name.startswith("__"):
            if name == "__version__":
                return importlib.import_module(f"{PACKAGE}.gapic_version").__version__
            raise AttributeError(name)
        if name.islower():  # a submodule: types, services, gapic_version ...
            value = importlib.import_module(f"{PACKAGE}.{name}")
        elif name.endswith("Client"):
            value = getattr(importlib.import_module(_service_module(name)), name)
        else:
            value = getattr(importlib.import_module(f"{PACKAGE}.types"), name)
        setattr(package, name, value)
        return value

    package.__getattr__ = __getattr__  # type: ignore[method-assign]
    return package


def load() -> ModuleType:
    """The ``compute_v1`` package: the lazy one, registered on first call, unless the real one is loaded already."""
    module = sys.modules.get(PACKAGE)
    if module is None:
        module = _lazy_package()
        sys.modules[PACKAGE] = module
        google.cloud.compute_v1 = module  # type: ignore[attr-defined]
    return module


compute_v1 = load()
