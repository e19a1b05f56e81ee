"""Storage backends for the parametrized protocol suite.

Each module in this package that defines `register(backends)` adds its
entries to conftest's BACKENDS dict: name -> function(tpops) returning the
extra tpops.conf settings (called before the config is written; it may also
set hooks on the Tpops object, such as `user_maildir`). A module that cannot
be imported (a missing client library, say) is skipped, so that one backend
cannot break the others."""
import importlib
import pkgutil
import sys


def register_all(backends):
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        try:
            module = importlib.import_module(f"{__name__}.{info.name}")
        except Exception as e:  # noqa: BLE001 - report and go on
            print(f"backends: {info.name} not loaded: {e!r}", file=sys.stderr)
            continue
        register = getattr(module, "register", None)
        if register is not None:
            register(backends)
