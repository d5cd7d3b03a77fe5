"""Evaluation for weakly-supervised temporal action localization (numpy only).

One evaluator for the whole repository: test.py, periodic evaluation during training
and `python -m eval` all call `evaluate_detection`.

    from eval import load_ground_truth, evaluate_detection, format_table
    gt = load_ground_truth("dataset/THUMOS14/gt.json", subset="test")  # once
    res = evaluate_detection(gt, predictions_dict)                      # every test
    print(format_table(res))

Detection AP follows the ActivityNet evaluation code (eval/README.md); video-level accuracy / mAP and the
background F-measure of the paper's Table 5 are here too.
"""
from .background import background_f_measure, segment_labels
from .classification import video_accuracy, video_map
from .detection import AVERAGE_RANGES, DEFAULT_TIOUS, evaluate_detection
from .loading import (EvalError, GroundTruth, Instance, Predictions, drop_unscored, load_ground_truth,
                      load_predictions, videos_without_predictions)
from .report import format_table

__all__ = [
    "AVERAGE_RANGES", "DEFAULT_TIOUS", "EvalError", "GroundTruth", "Instance", "Predictions",
    "background_f_measure", "drop_unscored", "evaluate_detection", "format_table", "load_ground_truth",
    "load_predictions", "segment_labels", "video_accuracy", "video_map", "videos_without_predictions",
]
