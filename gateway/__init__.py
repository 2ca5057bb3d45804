"""hookgate gateway package."""
