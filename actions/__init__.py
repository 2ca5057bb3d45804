"""hookgate actions package."""
