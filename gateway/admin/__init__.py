"""Admin API routes."""
