"""Annotations and features in, batches out: ActivityNet JSON, the synthetic world, real features, collate."""
from tadlab.data.collate import collate_videos
from tadlab.data.features import FeatureDataset, feature_times, resample_features, snippet_times
from tadlab.data.schema import (
    AnnotationWarning,
    VideoAnnotations,
    VideoDetections,
    as_ground_truth,
    class_names_of,
    detections_to_results,
    ground_truth_to_json,
    load_ground_truth,
    load_results,
    results_to_json,
    save_ground_truth,
    save_results,
)
from tadlab.data.synthetic import PRESETS, SyntheticWorld, make_world

__all__ = [
    "AnnotationWarning", "FeatureDataset", "as_ground_truth", "PRESETS", "SyntheticWorld", "VideoAnnotations", "VideoDetections",
    "class_names_of", "collate_videos", "detections_to_results", "feature_times", "ground_truth_to_json",
    "load_ground_truth", "load_results", "make_world", "resample_features", "results_to_json",
    "save_ground_truth", "save_results", "snippet_times",
]
