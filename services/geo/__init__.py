"""one-cognit geo: every host's GEOLOCATION from its public addresses, offline (SPEC section 8)."""
