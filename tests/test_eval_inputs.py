"""What evaluation does with real files and with mistakes: raw times, the default subset, id and label mismatches,
the JSON reader, the bound on thresholds, and a start without torch."""
from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from tadlab.data.schema import AnnotationWarning, load_ground_truth, load_results
from tadlab.eval import MAX_TIOU_THRESHOLDS, THUMOS_TIOU, evaluate_detection, main, parse_tiou

sys.path.insert(0, str(Path(__file__).parent))
from anet_reference import reference_evaluate

REPO = Path(__file__).resolve().parents[1]


def write(path: Path, data) -> Path:
    path.write_text(json.dumps(data))
    return path


def annotation(start, end, label="a"):
    return {"segment": [start, end], "label": label}


def prediction(start, end, label="a", score=0.5):
    return {"segment": [start, end], "label": label, "score": score}


# ---------------------------------------------------------------- raw times, as the official code scores them
def test_a_thumos14_style_file_with_annotations_past_the_duration_loads_and_evaluates(tmp_path, capsys):
    # THUMOS14's test annotations: some start after the stated duration; ActivityNet's: some end past it.
    truth = {"database": {
        "video_test_0000001": {"subset": "test", "duration": 60.0,
                               "annotations": [annotation(10.0, 14.5, "Diving"), annotation(61.2, 64.0, "Diving"),
                                               annotation(58.0, 62.5, "Shotput")]},
        "video_test_0000002": {"subset": "test", "duration": 30.0,
                               "annotations": [annotation(31.0, 33.0, "Shotput"), annotation(2.0, 5.0, "Shotput")]}}}
    results = {"results": {
        "video_test_0000001": [prediction(10.2, 14.5, "Diving", 0.9), prediction(61.0, 64.0, "Diving", 0.8),
                               prediction(57.5, 62.5, "Shotput", 0.7), prediction(-0.4, 3.0, "Diving", 0.2)],
        "video_test_0000002": [prediction(31.0, 33.1, "Shotput", 0.6), prediction(2.0, 4.0, "Shotput", 0.4)]}}
    gt_path, res_path = write(tmp_path / "thumos.json", truth), write(tmp_path / "res.json", results)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        metrics = evaluate_detection(gt_path, res_path, THUMOS_TIOU)
    messages = [str(w.message) for w in caught]
    assert len(messages) == 4 and {Path(w.filename).name for w in caught} == {"test_eval_inputs.py"}
    assert any("2 annotation(s) start at or after their video's duration" in m for m in messages)
    assert any("1 annotation(s) end past their video's duration" in m for m in messages)
    assert any("1 prediction(s) start before 0 s" in m for m in messages)
    assert any(m.startswith("results: 3 prediction(s) (50% of those on scored videos) end past their video's duration")
               and "snippets" not in m for m in messages)  # no hint: the ground truth reaches past it too
    ap, mean_ap, _ = reference_evaluate(truth, results, THUMOS_TIOU)
    np.testing.assert_allclose(metrics.mAP, mean_ap, rtol=0, atol=1e-9)
    assert metrics.mAP[-1] > 0.5  # the annotations past the duration are found, as officially
    assert main([str(gt_path), str(res_path), "--tiou", "0.3:0.7:0.1", "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["mAP"] == metrics.mAP.tolist()
    assert captured.err.count("warning: ") == 4


def test_an_annotation_past_the_duration_is_scored_as_written():
    # A real ActivityNet case: [49.5, 144] on [53.76, 144] of a 143.15 s video has tIoU 90.24 / 94.5 = 0.9549,
    # a hit at 0.95 officially; clipping the annotation to the duration would make it 89.39 / 94.5 = 0.9459.
    truth = {"database": {"v": {"subset": "validation", "duration": 143.15, "annotations": [annotation(53.76, 144)]}}}
    results = {"results": {"v": [prediction(49.5, 144)]}}
    with pytest.warns(AnnotationWarning, match="end past their video's duration"):
        metrics = evaluate_detection(truth, results)
    assert metrics.mAP[-1] == 1.0


def test_predictions_in_snippets_instead_of_seconds_are_said():
    truth = {"database": {f"v{i}": {"subset": "validation", "duration": 20.0, "annotations": [annotation(2, 6)]}
                          for i in range(4)}}
    # a detector's snippet units (T = 100 over 20 s) written as seconds: [10, 30] instead of [2, 6]
    results = {"results": {f"v{i}": [prediction(10, 30), prediction(50, 70)] for i in range(4)}}
    with pytest.warns(AnnotationWarning, match=r"results: 8 prediction\(s\) \(100% of those on scored videos\) end "
                                               r"past their video's duration \(largest overshoot 50 s, in video 'v0'\)"
                                               r".*suggest times in snippets or frames instead of seconds"):
        assert evaluate_detection(truth, results).average_mAP == 0.0


# ---------------------------------------------------------------- the subset
def test_the_default_subset_is_the_official_validation_and_the_result_says_so():
    truth = {"database": {"v": {"subset": "validation", "duration": 20.0, "annotations": [annotation(0, 10)]},
                          "t": {"subset": "training", "duration": 20.0, "annotations": [annotation(0, 10)]},
                          "x": {"subset": "testing", "duration": 20.0, "annotations": []}}}
    results = {"results": {"v": [prediction(0, 10)]}}
    assert evaluate_detection(truth, results).subset == "validation"
    assert evaluate_detection(truth, results).average_mAP == 1.0
    assert evaluate_detection(truth, results, subset=None).subset is None  # every video: t is missed
    assert evaluate_detection(truth, results, subset=None).average_mAP == 0.5
    single = {"database": {"t": truth["database"]["t"]}}
    with pytest.warns(UserWarning, match="not a ground-truth video"):
        assert evaluate_detection(single, {"results": {"t": [prediction(0, 10)], "v": [prediction(0, 1)]}}).subset is None
    no_validation = {"database": {"t": truth["database"]["t"], "x": truth["database"]["x"]}}
    assert evaluate_detection(no_validation, {"results": {"t": [prediction(0, 10)]}}).subset is None


# ---------------------------------------------------------------- video ids and labels that match nothing
ID_CASES = [
    ({"v_abc": [prediction(0, 10)]}, "abc", r"'v_' prefix that the ground truth's lack .*'v_abc' -> ground truth 'abc'"),
    ({"abc": [prediction(0, 10)]}, "v_abc", r"ground truth's ids carry a 'v_' prefix .*'abc' -> ground truth 'v_abc'"),
    ({"abc.mp4": [prediction(0, 10)]}, "abc", r"end in a file extension"),
    ({"ABC": [prediction(0, 10)]}, "abc", r"differ in upper and lower case"),
    ({"zzz": [prediction(0, 10)]}, "abc", r"e\.g\. results video 'zzz', ground-truth video 'abc': the ids must be"),
]


@pytest.mark.parametrize("results, truth_id, cause", ID_CASES)
def test_results_whose_ids_match_no_scored_video_stop_with_the_likely_cause(tmp_path, results, truth_id, cause):
    truth = {"database": {truth_id: {"subset": "validation", "duration": 20.0, "annotations": [annotation(0, 10)]}}}
    with pytest.raises(ValueError, match=r"none of the 1 video\(s\) in the results is a ground-truth video, so every "
                                         rf"score would be 0; likely cause: .*{cause}"):
        evaluate_detection(truth, {"results": results})
    gt_path, res_path = write(tmp_path / "gt.json", truth), write(tmp_path / "res.json", {"results": results})
    done = subprocess.run([sys.executable, "-m", "tadlab.eval", str(gt_path), str(res_path)], capture_output=True,
                          text=True, cwd=REPO)
    assert done.returncode == 2 and "likely cause" in done.stderr and "Traceback" not in done.stderr


def test_results_of_another_subset_and_partly_unknown_ids():
    truth = {"database": {"v": {"subset": "validation", "duration": 20.0, "annotations": [annotation(0, 10)]},
                          "t": {"subset": "training", "duration": 20.0, "annotations": [annotation(0, 10)]}}}
    with pytest.raises(ValueError, match=r"they are videos of subset\(s\) \['training'\]: choose the subset"):
        evaluate_detection(truth, {"results": {"t": [prediction(0, 10)]}}, subset="validation")
    partly = {"results": {"v": [prediction(0, 10)], "v_v": [prediction(0, 10), prediction(1, 2)]}}
    with pytest.warns(UserWarning, match=r"2 prediction\(s\) on 1 video\(s\) .*1 that the ground truth lacks, e\.g\. "
                                         r"'v_v'; the results' ids carry a 'v_' prefix"):
        evaluate_detection(truth, partly)


def test_labels_that_match_no_class_stop_with_the_likely_cause():
    truth = {"database": {"v": {"subset": "validation", "duration": 20.0,
                                "annotations": [annotation(0, 10, "Long jump")]}}}
    for labels, cause in ((["0", "3"], "the results hold class indices where the ground truth has class names"),
                          (["long jump"], "the labels differ from the ground truth's in upper and lower case"),
                          (["Archery"], r"the ground truth's classes are e\.g\. \['Long jump'\]")):
        results = {"results": {"v": [prediction(0, 10, label) for label in labels]}}
        with pytest.raises(ValueError, match=rf"no prediction has a label of the ground truth .*likely cause: {cause}"):
            evaluate_detection(truth, results)


# ---------------------------------------------------------------- the JSON reader
def test_json_errors_name_the_file(tmp_path):
    truth = {"database": {"v": {"subset": "validation", "duration": 20.0, "annotations": [annotation(0, 10)]}}}
    good = write(tmp_path / "gt.json", truth)
    twice = tmp_path / "twice.json"
    twice.write_text('{"results": {"v": [{"segment": [0, 10], "label": "a", "score": 0.9}], '
                     '"v": [{"segment": [50, 60], "label": "a", "score": 0.1}]}}')
    with pytest.raises(ValueError, match=r"results file '.*twice\.json' holds the key 'v' twice in one object"):
        evaluate_detection(good, twice)
    latin = tmp_path / "latin.json"
    latin.write_bytes('{"database": {"caf\u00e9": {}}}'.encode("latin-1"))
    with pytest.raises(ValueError, match=r"ground truth file '.*latin\.json' is not UTF-8 text: byte 18 is b'\\xe9'"):
        load_ground_truth(latin)
    deep = tmp_path / "deep.json"
    deep.write_text('{"results": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(ValueError, match=r"results file '.*deep\.json' is nested too deeply .* an ActivityNet file "
                                         r"nests 6"):
        load_results(deep)
    broken = tmp_path / "broken.json"
    broken.write_text('{"results": {"v": [')
    with pytest.raises(ValueError, match=r"results file '.*broken\.json' is not valid JSON"):
        load_results(broken)
    with_bom = tmp_path / "bom.json"
    with_bom.write_bytes(b"\xef\xbb\xbf" + json.dumps(truth).encode())
    assert load_ground_truth(with_bom) == load_ground_truth(truth)
    ignore_twice = tmp_path / "ignore.json"
    ignore_twice.write_text('[{"a": 1, "a": 2}]')
    with pytest.raises(ValueError, match="holds the key 'a' twice"):
        evaluate_detection(good, {"results": {"v": [prediction(0, 10)]}}, ignore_videos=ignore_twice)


# ---------------------------------------------------------------- thresholds
@pytest.mark.parametrize("spec", ["0:1:1e-12", "0.5:0.95:0.0000001"])
def test_the_number_of_thresholds_is_bounded(spec):
    with pytest.raises(ValueError, match=rf"at most {MAX_TIOU_THRESHOLDS} are allowed .* got '{spec}', which makes"):
        parse_tiou(spec)


def test_the_bound_holds_for_lists_and_arrays_too():
    assert len(parse_tiou(np.linspace(0, 1, MAX_TIOU_THRESHOLDS))) == MAX_TIOU_THRESHOLDS
    with pytest.raises(ValueError, match="at most 1000 are allowed .* got 1001"):
        parse_tiou(np.linspace(0, 1, MAX_TIOU_THRESHOLDS + 1))
    with pytest.raises(ValueError, match="at most 1000 are allowed"):
        parse_tiou(",".join(["0.5"] * 1001))
    with pytest.raises(ValueError, match="at most 1000 are allowed"):
        parse_tiou([0.5] * 1001)


# ---------------------------------------------------------------- a start without torch
def test_the_command_line_imports_no_torch(tmp_path):
    truth = {"database": {"v": {"subset": "validation", "duration": 20.0, "annotations": [annotation(0, 10)]}}}
    gt_path = write(tmp_path / "gt.json", truth)
    res_path = write(tmp_path / "res.json", {"results": {"v": [prediction(0, 10)]}})
    for extra in ([], ["--proposals"]):
        done = subprocess.run([sys.executable, "-X", "importtime", "-m", "tadlab.eval", str(gt_path), str(res_path),
                               "--json", *extra], capture_output=True, text=True, cwd=REPO, check=True)
        imported = [line.split("|")[-1].strip() for line in done.stderr.splitlines() if "|" in line]
        assert "tadlab.eval.cli" in imported and not any(name.split(".")[0] == "torch" for name in imported)
    probe = ("import sys, tadlab, tadlab.data, tadlab.data.schema, tadlab.eval; "
             "assert 'torch' not in sys.modules; "
             "from tadlab.data import load_ground_truth, AnnotationWarning; assert 'torch' not in sys.modules; "
             "from tadlab.data import make_world, FeatureDataset, collate_videos; from tadlab import seed_everything; "
             "assert 'torch' in sys.modules and tadlab.data.synthetic.make_world is make_world; print('ok')")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
