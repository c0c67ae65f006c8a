"""tadlab: temporal action detection, taught in notebooks.

Modules: ``tadlab.data`` (synthetic world, ActivityNet JSON, real features), ``tadlab.segments``
(tIoU, GIoU, Soft-NMS), ``tadlab.eval`` (ActivityNet-exact mAP and AR@AN), ``tadlab.train`` (one training loop),
``tadlab.models`` (detectors).

Importing tadlab imports nothing heavy: submodules and the names below load on first use, so that
``python -m tadlab.eval`` runs without torch.
"""
from tadlab._lazy import lazy_exports

__version__ = "0.1.0"
_EXPORTS = {"resolve_device": "tadlab.utils", "seed_everything": "tadlab.utils"}
__all__ = ["resolve_device", "seed_everything", "__version__"]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
