"""one-cognit authd service."""
