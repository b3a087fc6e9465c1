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

.PHONY: install data weights reproduce publish smoke test unit nbval golden sweep select-split sweep-contrast contrast ngd-damped regimes benchmarks gpu-bundle gpu-check lab clean-venv

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
	@$(PY) -m lib.cli data status 2>/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing the Debian package dataset-fashion-mnist"; \
	    (apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 || \
	     { apt-get update -qq >/dev/null && apt-get install -y -qq dataset-fashion-mnist >/dev/null; }) || true; \
	  fi; \
	  $(PY) -m lib.cli data fetch; }

# Pretrained VGG16 (LPIPS-VGG) and Inception-v3 (FID) for the paper profile, into weights/
# (or $$DDCS_MI_WEIGHTS); needs internet once, records their sha256. smoke/cpu never need it.
weights: $(STAMP)
	$(PY) -m lib.cli weights fetch

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

# The entropy-weight sweep of the transfer (its own job, not part of reproduce; 16 min on 2 cores
# on the run folder of a `make reproduce`, RUN=runs/<folder>, whose models it reuses): writes
# results/entropy_sweep.json; commit it and set the cpu profile's
# entropy_weight / ngd_entropy_weight / ngd_damped_entropy_weight (authors' units) to the
# chosen values (a test checks they agree).
sweep: data
	DDCS_MI_HEADLESS=1 $(PY) -m lib.cli sweep --profile cpu $(if $(RUN),--run-dir $(RUN))

# The choice of the shifted split (docs/protocol.md, "Choosing a shifted split"): each
# candidate measured by the registered criteria on vanilla, selection seeds 100-102 (about 20 min
# per candidate on 2 cores); REF=runs/<same-class cpu run> reuses that run's T, E, P and prior for
# criterion 4's reference; CD=runs/… and CS=runs/… continue the class-disjoint and cluster-shift
# candidates in those folders. Writes split_selection.json into results/; commit it.
select-split: data
	DDCS_MI_HEADLESS=1 $(PY) -m lib.cli study split-selection --profile cpu $(if $(REF),--reference-run $(REF)) \
	  $(if $(CD),--candidate-run class-disjoint=$(CD)) $(if $(CS),--candidate-run cluster-shift=$(CS))

# The same-class contrast (descriptive): its own entropy-weight sweep (a new run folder,
# results/same-class/entropy_sweep.json), then the cpu profile on that split with the sweep's
# choices; publish the run with make publish RUN=… (it goes to results/same-class/).
sweep-contrast: data
	DDCS_MI_HEADLESS=1 $(PY) -m lib.cli sweep --profile cpu -o split=same-class --out results/same-class/entropy_sweep.json

contrast: data
	$(PY) run_all.py --profile cpu --contrast

# The committed study of the fourth mode, entropy+ngd-damped (claim C2d; 5 min on a run
# folder of `make reproduce`, RUN=runs/<folder>; from scratch without RUN): writes
# results/ngd_damped_study.json, which notebooks 04 and 99 read.
ngd-damped: data
	DDCS_MI_HEADLESS=1 $(PY) -m lib.cli study ngd-damped --profile cpu $(if $(RUN),--run-dir $(RUN))

# The committed study of the memorisation regime (6 min on 2 cores on a run folder of
# `make reproduce`, RUN=runs/<folder>, whose E, P, prior and vanilla transfers it reuses):
# writes results/regimes.json, which notebook 08 reads.
regimes: data
	DDCS_MI_HEADLESS=1 $(PY) -m lib.cli study regimes --profile cpu $(if $(RUN),--run-dir $(RUN))

benchmarks: data
	@for f in benchmarks/*.py; do case $$f in *gpu_check.py|*footprint.py) continue;; \
	  *ema_statistics.py|*ema_rampup_effect.py|*selection_positive_control.py) echo "== $$f: reads a finished run folder, run it by hand"; continue;; \
	  *run_beside_floors.py) echo "== $$f: a whole cpu run with its floors (about 47 min), run it by hand"; continue;; \
	  *paper_scale.py) echo "== $$f: takes --identities and --out, run it by hand (benchmarks/README.md)"; continue;; esac; \
	  echo "== $$f"; $(PY) $$f || exit 1; done

# The GPU check (benchmarks/gpu_check.sh) on a machine with no package registry: bundle what
# it lacks. kornia's wheels for CPython 3.12 on x86-64 into .wheels/ (git-ignored; set
# GPU_PYTHON=3.11 etc. for another Python), Fashion-MNIST into data/raw/fashion-mnist/.
GPU_PYTHON ?= 3.12
gpu-bundle: data
	rm -rf .wheels && mkdir -p .wheels data/raw/fashion-mnist
	$(PY) -m pip download --quiet --no-deps --only-binary=:all: --python-version $(GPU_PYTHON) \
	  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
	  --platform manylinux2014_x86_64 -d .wheels \
	  $$($(PY) -m pip freeze | grep -i -E '^kornia(-|_)?(rs)?==')
	$(PY) -c "import shutil, lib.data.fashion_mnist as D; src = D.find_source_dir(); dst = D.local_dir(); \
	  [shutil.copy(src / (s + '.gz'), dst) for s in D.FILES.values() if src != dst]"
	@ls .wheels data/raw/fashion-mnist

# The same check here, on the CPU, with the "cpu" counts (same shapes, fewer steps)
gpu-check: data
	$(PY) benchmarks/gpu_check.py --device cpu --counts cpu --out runs/gpu_check_cpu \
	  --part-s 3600 --command-s 36000

# JupyterLab with the CPU kernels pinned as in a run (lib.paths.pin_cpu_kernels)
lab: data
	$(PY) -c 'import os, sys; from lib import paths; paths.pin_cpu_kernels(); \
	  os.execv(sys.executable, [sys.executable, "-m", "jupyterlab", "notebooks/"])'

clean-venv:
	rm -rf $(VENV)
