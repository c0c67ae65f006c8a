"""Annotations and features in, batches out: ActivityNet JSON, the synthetic world, real features, collate.

The names below load on first use (``from tadlab.data import make_world`` works as usual), so that reading
ActivityNet JSON through ``tadlab.data.schema`` never imports torch. To export a name, add it to its module's line.
"""
from tadlab._lazy import lazy_exports

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
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
