# tadlab: two commands do everything on a fresh machine with Python 3.11 and pip.
#   make notebooks    run the notebook sequence headless (PROFILE=ci by default; PROFILE=full redraws figures/)
#   make test         unit and property tests, then every notebook under strict nbval
#   make lab          JupyterLab on lab/, your own copies of the notebooks (STUDENT=1: lab-student/, no solutions)
#   make student      student copies (solutions replaced by empty exercise cells) in out/student/
#   make results      every stored result (results/*.json) rebuilt by the Snakemake workflow (hours; resumable);
#                     make results PROFILE=smoke runs the whole DAG in minutes into out/results-smoke/
# Each creates .venv and installs what it needs. GPU users: see README (install your CUDA PyTorch first).

PYTHON ?= python3
VENV ?= .venv
PROFILE ?= ci
JOBS ?= 2
# The CPU set-up pins this torch; set TORCH_PIN= (empty) to keep a torch you installed into $(VENV) yourself.
TORCH_PIN ?= torch==2.13.0
BIN := $(VENV)/bin
# make lab: the folder JupyterLab works in (git-ignored); extra options for jupyter-lab, e.g. LAB_ARGS=--no-browser
LAB_DIR ?= $(if $(STUDENT),lab-student,lab)
LAB_ARGS ?=
# Jupyter refuses to run as root (a container, a CI machine) unless told to
ALLOW_ROOT := $(if $(filter 0,$(shell id -u 2>/dev/null)),--allow-root)

# make results: "full" unless PROFILE is given on the command line (PROFILE=ci is the notebooks' default, not this)
RESULTS_PROFILE := $(if $(filter command line,$(origin PROFILE)),$(PROFILE),full)

.PHONY: notebooks test venv lab student browser results clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(if $(TORCH_PIN),$(BIN)/python -m pip install --quiet "$(TORCH_PIN)")
	$(BIN)/python -m pip install --quiet -e ".[notebooks,test]"
	touch $@

# JupyterLab (the "lab" extra), and Playwright for tests/test_lab_browser.py (the "browser" extra; CI installs it,
# Chromium itself comes from the system: apt-get install chromium).
$(VENV)/.lab: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e ".[lab]"
	touch $@

$(VENV)/.browser: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e ".[browser]"
	touch $@

browser: $(VENV)/.browser

$(VENV)/.workflow: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e ".[workflow]"
	touch $@

results: $(VENV)/.workflow
	$(BIN)/snakemake -s workflow/Snakefile --config profile=$(RESULTS_PROFILE) python=$(abspath $(BIN)/python) \
		--cores $(JOBS) --rerun-triggers mtime --keep-going

notebooks: venv
	$(BIN)/python scripts/run_notebooks.py --profile $(PROFILE)

# Two test files (or notebooks) at a time, one thread each: the 2-core machines these run on stay fully used.
# A kernel may take longer than nbval's default 60 s to answer its first request while the other notebook trains
# on a loaded machine (a CI run lost all of notebook 04 that way): it gets KERNEL_STARTUP_S.
KERNEL_STARTUP_S ?= 600
test: venv
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -p no:cacheprovider -n $(JOBS) --dist loadfile tests
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -p no:cacheprovider -n $(JOBS) --dist loadfile --nbval notebooks \
		--nbval-kernel-startup-timeout $(KERNEL_STARTUP_S)

student: venv
	$(BIN)/python scripts/student_copies.py --output-dir out/student

# Copies the notebooks missing from $(LAB_DIR) (never one that is there: delete a copy to get a fresh one), then
# serves that folder on localhost with the project's venv, so edits and autosaves never touch notebooks/.
lab: $(VENV)/.lab
	$(BIN)/python scripts/student_copies.py --output-dir $(LAB_DIR) --keep-existing $(if $(STUDENT),,--with-solutions)
	$(BIN)/jupyter-lab --ServerApp.ip=localhost --ServerApp.root_dir=$(LAB_DIR) $(ALLOW_ROOT) $(LAB_ARGS)

clean:
	rm -rf out
