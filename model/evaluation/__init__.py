"""Evaluation on synthetic runway data, by the factor predictor. Each module imports only those listed before it:

- ``predictor``: the network that reads the factors off an image, and its weights file;
- ``factor_changes``: how an edit is measured per factor (scales, crosstalk compensation, purity, consistency);
- ``calibration``: training the predictor and calibrating its crosstalk (``atelier factors train`` / ``calibrate``);
- ``distributions``: TV per factor, spread ratios, the Fréchet distance;
- ``samples``: the predictor's readings of many real or generated images;
- ``evaluate`` and ``eval_plot``: ``atelier eval-model``, its report and its picture;
- ``benchmark``: the ground-truth benchmark of ``atelier bench discovery``.
"""
