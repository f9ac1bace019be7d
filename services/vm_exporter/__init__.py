"""one-cognit vm_exporter service."""
