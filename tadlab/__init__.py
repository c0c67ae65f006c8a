"""tadlab: temporal action detection, taught in notebooks.

Modules: ``tadlab.data`` (synthetic world, ActivityNet JSON, real features), ``tadlab.segments``
(tIoU, GIoU, Soft-NMS), ``tadlab.eval`` (ActivityNet-exact mAP), ``tadlab.train`` (one training loop),
``tadlab.models`` (detectors).
"""
from tadlab.utils import resolve_device, seed_everything

__version__ = "0.1.0"
__all__ = ["resolve_device", "seed_everything", "__version__"]
