"""hookgate storage backends."""
