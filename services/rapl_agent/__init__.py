"""one-cognit rapl_agent service."""
