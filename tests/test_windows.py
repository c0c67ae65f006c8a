"""Sliding windows (tadlab.windows): where windows start, which instances a window records (tIoA > 0.5, clipped,
shifted), per-video centring, and a wrapped detector's detections shifted back and merged on whole videos."""
import pytest
import torch

from tadlab.models.sptad import SPTAD
from tadlab.train import predict
from tadlab.windows import SlidingWindowDetector, crop_windows, window_starts


def item(features, segments, labels, video_id="v", duration=100.0):
    return {"video_id": video_id, "features": features, "segments": torch.tensor(segments, dtype=torch.float32),
            "labels": torch.tensor(labels, dtype=torch.int64), "duration": duration}


def test_windows_cover_the_video_and_the_last_ends_at_its_end():
    assert window_starts(256, 32, 16) == list(range(0, 224, 16)) + [224]
    assert window_starts(100, 32, 32) == [0, 32, 64, 68]
    assert window_starts(20, 32, 8) == [0]  # a video shorter than a window: one window
    with pytest.raises(ValueError, match="stride must be a positive int"):
        window_starts(100, 32, 0)


def test_a_window_records_an_instance_only_when_more_than_half_of_it_is_inside():
    video = item(torch.randn(3, 64), [[10.0, 20.0], [28.0, 40.0], [29.0, 34.0], [30.0, 34.0], [60.0, 64.0]],
                 [1, 2, 3, 5, 4])
    windows = crop_windows([video], length=32, stride=32)
    assert [w["video_id"] for w in windows] == ["v@0", "v@32"]
    first, second = windows
    # [28, 40): 4 of 12 snippets in [0, 32) -> not recorded there; 8 of 12 in [32, 64) -> recorded, clipped;
    # [29, 34): 3 of 5 in [0, 32) -> recorded there; [30, 34): exactly half in each window -> recorded in neither
    assert first["segments"].tolist() == [[10.0, 20.0], [29.0, 32.0]] and first["labels"].tolist() == [1, 3]
    assert second["segments"].tolist() == [[0.0, 8.0], [28.0, 32.0]] and second["labels"].tolist() == [2, 4]
    assert torch.equal(second["features"], video["features"][:, 32:64])
    assert first["duration"] == pytest.approx(50.0)


def test_empty_windows_are_dropped_unless_asked_and_short_videos_are_padded():
    video = item(torch.ones(2, 40), [[1.0, 3.0]], [0])
    assert [w["video_id"] for w in crop_windows([video], 16, 16)] == ["v@0"]
    assert [w["video_id"] for w in crop_windows([video], 16, 16, keep_empty=True)] == ["v@0", "v@16", "v@24"]
    short = crop_windows([item(torch.ones(2, 10), [[1.0, 3.0]], [0])], 16, 8)[0]
    assert short["features"].shape == (2, 16) and short["features"][:, 10:].abs().sum() == 0


def test_centring_is_per_video_not_per_window():
    features = torch.cat([torch.zeros(1, 16), torch.full((1, 16), 2.0)], dim=1)  # video mean 1
    video = item(features, [[0.0, 16.0], [16.0, 32.0]], [0, 1])
    left, right = crop_windows([video], 16, 16, center_features=True)
    assert left["features"].unique().tolist() == [-1.0] and right["features"].unique().tolist() == [1.0]
    with pytest.raises(ValueError, match="min_ioa"):
        crop_windows([video], 16, 16, min_ioa=1.0)


class OneDetectionPerWindow(torch.nn.Module):
    """A fake detector: in each window, one detection of class 0 on the snippets where feature 0 is positive."""

    def forward(self, features):
        return {"features": features}

    def detect(self, outputs, **kwargs):
        detections = []
        for clip in outputs["features"]:
            on = (clip[0] > 0).nonzero()[:, 0].float()
            segments = torch.stack([on.min(), on.max() + 1])[None] if len(on) else torch.zeros(0, 2)
            detections.append({"segments": segments, "scores": torch.full((len(segments),), 0.9),
                               "labels": torch.zeros(len(segments), dtype=torch.int64)})
        return detections


def test_detections_are_shifted_to_the_video_and_duplicates_of_overlapping_windows_decayed():
    features = torch.full((2, 1, 64), -1.0)
    features[0, 0, 40:44] = 1.0  # video 0: an action at [40, 44), seen by windows [32, 48) and [40, 56)
    detector = SlidingWindowDetector(OneDetectionPerWindow(), length=16, stride=8)
    outputs = detector(features)
    assert outputs["starts"] == [0, 8, 16, 24, 32, 40, 48] and outputs["windows"]["features"].shape == (14, 1, 16)
    first, second = detector.detect(outputs)
    assert first["segments"].tolist() == [[40.0, 44.0], [40.0, 44.0]]  # two windows saw it; Soft-NMS decays one
    assert first["scores"][0] == pytest.approx(0.9) and first["scores"][1] < 0.9
    assert len(second["scores"]) == 0
    with pytest.raises(TypeError, match="crop_windows"):
        detector.loss(outputs, {})


def test_a_windowed_sptad_predicts_on_whole_videos():
    torch.manual_seed(0)
    model = SPTAD(8, 3, hidden=16, heads=2, num_proposals=5, num_stages=1, dynamic_dim=4, soi_points=4)
    videos = [item(torch.randn(8, 50), [[5.0, 9.0]], [1], video_id=f"v{i}") for i in range(2)]
    detections = predict(SlidingWindowDetector(model, 16, 8, center_features=True), videos, device="cpu")
    assert len(detections) == 2
    for det in detections:
        assert det["segments"].shape[1] == 2 and (det["segments"] >= 0).all() and (det["segments"] <= 50).all()
        assert (det["scores"][:-1] >= det["scores"][1:]).all() and len(det["scores"]) <= 200
