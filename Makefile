# Two commands do all set-up on a fresh machine:
#   make reproduce   the cpu profile, end to end (run_all.py --profile cpu)
#   make test        unit tests + nbval on the committed (smoke) notebooks
# Each creates .venv, installs the pinned requirements and this package, registers the
# Jupyter kernel and obtains Fashion-MNIST when it is missing.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
KERNEL := ddcs-mi
NBVAL := --nbval-lax --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg

.PHONY: install data weights reproduce publish smoke test unit nbval golden sweep benchmarks lab clean-venv

install: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	$(PY) -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "Python (ddcs-mi)" >/dev/null
	touch $(STAMP)

# Fashion-MNIST: a local copy, else Debian's package (installed here when root with apt),
# else torchvision's download (the only network use). Verified by sha256 either way.
data: $(STAMP)
	@$(PY) -m lib.data status 2>/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing the Debian package dataset-fashion-mnist"; \
	    (apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 || \
	     { apt-get update -qq >/dev/null && apt-get install -y -qq dataset-fashion-mnist >/dev/null; }) || true; \
	  fi; \
	  $(PY) -m lib.data fetch; }

# Pretrained VGG16 (LPIPS-VGG) and Inception-v3 (FID) for the paper profile, into weights/
# (or $$DDCS_MI_WEIGHTS); needs internet once, records their sha256. smoke/cpu never need it.
weights: $(STAMP)
	$(PY) -m lib.weights fetch

reproduce: data
	$(PY) run_all.py --profile cpu

# Copy a finished full run's summary.json, summary.md and headline figure into results/
# (committed): make publish RUN=runs/<folder>
publish: $(STAMP)
	@test -n "$(RUN)" || { echo "usage: make publish RUN=runs/<run folder>"; exit 2; }
	$(PY) run_all.py --publish $(RUN)

smoke: data
	$(PY) run_all.py --profile smoke

unit: data
	DDCS_MI_HEADLESS=1 $(PY) -m pytest tests -q

nbval: data
	DDCS_MI_HEADLESS=1 PYTHONHASHSEED=0 $(PY) -m pytest $(NBVAL) notebooks -q

test: unit nbval

golden: data
	$(PY) run_all.py --golden

# The entropy-weight sweep of the transfer (its own job, ~40 min on 2 cores, not part of
# reproduce): writes results/entropy_sweep.json; commit it and set the cpu profile's
# entropy_weight / ngd_entropy_weight to the chosen values (a test checks they agree).
sweep: data
	DDCS_MI_HEADLESS=1 $(PY) -m lib.transfer sweep --profile cpu

benchmarks: data
	@for f in benchmarks/*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

lab: data
	$(VENV)/bin/jupyter lab notebooks/

clean-venv:
	rm -rf $(VENV)
