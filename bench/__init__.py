"""``make bench``: the pipeline measured against the machine's own ceilings, in one run."""
