"""`wavemix-profile validate`: stages, checks and probes (see commands/validate.py)."""
