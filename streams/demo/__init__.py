"""The local demo: the whole pipeline on the embedded stack with a realistic feed."""
