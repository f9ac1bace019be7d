"""OpenNebula + hypervisor simulator used by `make demo` and the tests."""
