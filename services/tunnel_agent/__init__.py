"""one-cognit tunnel_agent service."""
