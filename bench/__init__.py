"""`make bench`: hookgate's performance figures, measured against a baseline in the same run."""
