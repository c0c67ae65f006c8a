"""tadlab: temporal action detection, taught in notebooks.

Modules: ``tadlab.data`` (synthetic world, ActivityNet JSON, real features), ``tadlab.segments``
(tIoU, GIoU, Soft-NMS), ``tadlab.eval`` (ActivityNet-exact mAP and AR@AN), ``tadlab.train`` (one training loop),
``tadlab.models`` (detectors).

Importing tadlab imports nothing heavy: submodules and the names below load on first use, so that
``python -m tadlab.eval`` runs without torch.
"""
from importlib import import_module

__version__ = "0.1.0"
_EXPORTS = {"resolve_device": "tadlab.utils", "seed_everything": "tadlab.utils"}
__all__ = ["resolve_device", "seed_everything", "__version__"]


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name]), name)
    elif not name.startswith("__"):
        try:
            value = import_module(f"{__name__}.{name}")  # tadlab.losses etc. after a bare `import tadlab`
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
