# fishspine: `make run` sets everything up and opens the app; `make test` sets everything up and runs the tests.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# Debian packages the Qt GUI (and its offscreen tests) needs at run time, plus fonts for figures.
DEBIAN_PACKAGES := libegl1 libgl1 libglx0 libglvnd0 libfontconfig1 libfreetype6 libxkbcommon0 \
	libdbus-1-3 libglib2.0-0 libx11-6 libx11-xcb1 libxcb1 fonts-dejavu-core
STAMP := $(VENV)/.fishspine-installed

.PHONY: setup run lint test test-fast debian-packages bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@$(MAKE) --no-print-directory debian-packages
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade --quiet pip
	# torch/torchvision pinned to the builds this project is developed and tested with.
	$(PIP) install --quiet torch==2.14.1 torchvision==0.29.1
	$(PIP) install --quiet -e '.[test]'
	touch $(STAMP)

debian-packages:
	@missing=""; for p in $(DEBIAN_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi

run: setup
	$(VENV)/bin/fishspine-gui

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

test: setup lint
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest

test-fast: setup
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -m "not slow"

bench: setup
	$(VENV)/bin/fishspine bench models

clean:
	rm -rf $(VENV) build dist *.egg-info
