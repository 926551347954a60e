"""Evaluation: class-balanced sampling to disk, feature extractors, scores, consistency diagnostics."""
