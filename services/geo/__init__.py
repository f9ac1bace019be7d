"""one-cognit geo service."""
