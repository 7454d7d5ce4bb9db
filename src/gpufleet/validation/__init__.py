"""Validation before service: each cluster's policy, results ingested per pass, bans, re-ban rates and thresholds."""
