"""hookgate rules package."""
