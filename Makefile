# fishspine: `make run` sets everything up and opens the app; `make test` sets everything up and runs the tests.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# Debian packages the Qt GUI needs at run time, plus fonts for figures. The libxcb-* and
# libxkbcommon-x11-0 are what PySide6's xcb plugin links (readelf -d Qt/plugins/platforms/libqxcb.so,
# Qt/lib/libQt6XcbQpa.so.6); libxcb-glx0 is for its GLX integration. Keep app/display_check.py's table
# in step. xvfb and xauth give the tests a real X server.
DEBIAN_PACKAGES := libegl1 libgl1 libglx0 libglvnd0 libfontconfig1 libfreetype6 libxkbcommon0 \
	libdbus-1-3 libglib2.0-0 libx11-6 libx11-xcb1 libxcb1 fonts-dejavu-core \
	libxkbcommon-x11-0 libxcb-cursor0 libxcb-glx0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 \
	libxcb-randr0 libxcb-render0 libxcb-render-util0 libxcb-shape0 libxcb-shm0 libxcb-sync1 \
	libxcb-util1 libxcb-xfixes0 libxcb-xkb1 \
	xvfb xauth
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
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest --durations=25

test-fast: setup
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -m "not slow"

bench: setup
	$(VENV)/bin/fishspine bench models

clean:
	rm -rf $(VENV) build dist *.egg-info
