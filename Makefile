# vigie — every target installs what it needs itself (a .venv, and Debian packages when run as root),
# so `make demo` and `make test` work on a fresh Debian machine with only Python 3.11, git and make.
SHELL := /bin/bash
# Debian's interpreter, not a pyenv one under /root: snmpsim drops privileges to `nobody`, which must
# be able to read the interpreter the lab's simulator runs under.
PYTHON ?= /usr/bin/python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# python3-venv: the venv itself; victoria-metrics: the real line-protocol peer of the store tests;
# postgresql: the real server of the PostgreSQL probe's tests; iproute2: their network namespaces;
# systemd: systemd-analyze, which checks the Ansible role's unit.
APT_PACKAGES := python3-venv python3-pip victoria-metrics influxdb postgresql iproute2 golang-go golang-github-vmware-govmomi-dev chromium openssh-server git graphviz systemd
PYTEST_WORKERS ?= 2

.PHONY: demo test test-ansible bench lint system-deps clean

system-deps:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	  if [ -n "$$missing" ]; then \
	    echo "installing Debian packages: $$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  fi; \
	fi

$(STAMP): pyproject.toml lab/pyproject.toml | system-deps
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]' -e ./lab
	touch $@

# The interface-down story, then the alerting one: a site outage as one ticket, a maintenance
# window holding a fault back, the alert SLA line.
demo: $(STAMP)
	$(BIN)/vigie demo
	$(BIN)/vigie demo --scenario alerting

test: $(STAMP)
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadfile --ignore=tests/ansible tests
	$(MAKE) test-ansible

# The Ansible role (ansible/): ansible-lint, two runs into a scratch root, systemd-analyze on its unit.
# A minute or two: the first run pip-installs vigie and its dependencies into the role's virtualenv.
test-ansible: $(STAMP)
	$(BIN)/pytest -p no:xdist tests/ansible

# The SNMP bench measures vigie against Debian's prometheus-snmp-exporter in the same run.
bench: $(STAMP)
	@if [ "$$(id -u)" = 0 ] && ! command -v prometheus-snmp-exporter >/dev/null; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus-snmp-exporter; \
	fi
	@for script in bench/bench_*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) var
