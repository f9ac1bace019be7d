"""one-cognit discovery service."""
