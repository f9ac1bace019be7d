"""one-cognit: OpenNebula energy, discovery, geolocation, token-auth and migration services."""
