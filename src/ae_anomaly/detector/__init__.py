"""The anomaly detector: AutoencoderDetector (estimator.py) and its saved folder (files.py)."""
