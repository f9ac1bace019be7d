"""Shared runtime of every one-cognit service: config, app factory, logging, clients."""
