"""tagdistill: distil transformer token taggers into small, fast word-level taggers."""

__version__ = "0.1.0"
