"""`rear study`: plain AR, its two ablations and reAR, trained and scored alike over several seeds."""
from rear.study.pipeline import ARMS, QUICK, run_study

__all__ = ["ARMS", "QUICK", "run_study"]
