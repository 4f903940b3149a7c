"""Evaluation: the factor predictor, its calibration and the ground-truth benchmark on synthetic runway data."""
