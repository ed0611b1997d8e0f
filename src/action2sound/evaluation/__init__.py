"""Evaluation: FAD with pluggable embedders, the AV-Sync classifier, benchmark metrics and the evaluate runner."""

from .benchmark_metrics import controllability, detect_onsets, onset_f1
from .fad import fad, frechet_distance, gaussian_stats
from .runner import EvalReport, EvalSettings, evaluate, markdown_table

__all__ = [
    "EvalReport", "EvalSettings", "controllability", "detect_onsets", "evaluate", "fad", "frechet_distance",
    "gaussian_stats", "markdown_table", "onset_f1",
]
