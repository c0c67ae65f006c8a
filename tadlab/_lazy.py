"""Lazy package exports: names load on first use, so importing a package imports nothing heavy (no torch)."""
from importlib import import_module


def lazy_exports(package: str, exports: dict):
    """``__getattr__`` and ``__dir__`` for ``package`` whose ``exports`` map a public name to its module.

    Any other attribute is tried as a submodule (``tadlab.losses`` after a bare ``import tadlab``).
    """
    namespace = import_module(package).__dict__

    def __getattr__(name):
        if name in exports:
            value = getattr(import_module(exports[name]), name)
        elif not name.startswith("__"):
            try:
                value = import_module(f"{package}.{name}")
            except ModuleNotFoundError as exc:
                if exc.name != f"{package}.{name}":
                    raise
                raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        namespace[name] = value
        return value

    def __dir__():
        return sorted(set(namespace) | set(namespace.get("__all__", ())))

    return __getattr__, __dir__
