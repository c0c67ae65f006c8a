"""Annotations and features in, batches out: ActivityNet JSON, the synthetic world, real features, collate.

The names below load on first use (``from tadlab.data import make_world`` works as usual), so that reading
ActivityNet JSON through ``tadlab.data.schema`` never imports torch. To export a name, add it to its module's line.
"""
from importlib import import_module

_EXPORTS_BY_MODULE = {
    "tadlab.data.collate": ["collate_videos"],
    "tadlab.data.features": ["FeatureDataset", "feature_times", "resample_features", "snippet_times"],
    "tadlab.data.schema": ["AnnotationWarning", "VideoAnnotations", "VideoDetections", "as_ground_truth",
                           "class_names_of", "detections_to_results", "ground_truth_to_json", "load_ground_truth",
                           "load_results", "results_to_json", "save_ground_truth", "save_results"],
    "tadlab.data.statistics": ["dataset_statistics", "statistics_table"],
    "tadlab.data.synthetic": ["PRESETS", "SyntheticWorld", "WorldConfig", "make_world"],
}
_EXPORTS = {name: module for module, names in _EXPORTS_BY_MODULE.items() for name in names}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name]), name)
    elif not name.startswith("__"):
        try:  # a submodule, e.g. tadlab.data.synthetic after a bare `import tadlab.data`
            value = import_module(f"{__name__}.{name}")
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
