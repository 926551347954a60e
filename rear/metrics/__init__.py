"""Sample-quality metrics with the ADM evaluator's definitions."""
from rear.metrics.scores import (fid_from_features, fid_sampling_error, frechet_distance, inception_score,
                                 kernel_inception_distance, precision_recall, statistics)

__all__ = ["fid_from_features", "fid_sampling_error", "frechet_distance", "inception_score", "kernel_inception_distance",
           "precision_recall", "statistics"]
