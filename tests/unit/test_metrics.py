import numpy as np
import pytest

from bert_pipeline.evaluation.metrics import classification_report


def test_report_matches_hand_computed_values() -> None:
    y_true = np.array([0, 0, 0, 1, 1, 2])
    y_pred = np.array([0, 0, 1, 1, 2, 2])
    report = classification_report(y_true, y_pred, ["a", "b", "c"])
    assert report["accuracy"] == pytest.approx(4 / 6)
    # a: p=1 r=2/3 f=0.8; b: p=1/2 r=1/2 f=0.5; c: p=1/2 r=1 f=2/3
    assert report["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert report["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert report["per_class"]["c"]["support"] == 1


def test_macro_f1_counts_classes_that_are_only_predicted() -> None:
    report = classification_report(np.array([0, 0, 1, 1]), np.array([0, 2, 1, 1]), ["a", "b", "c"])
    assert report["macro_f1"] == pytest.approx((2 / 3 + 1.0 + 0.0) / 3)  # scikit-learn: 0.5556
