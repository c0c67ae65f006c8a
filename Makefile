# tadlab: two commands do everything on a fresh machine with Python 3.11 and pip.
#   make notebooks    run the notebook sequence headless (PROFILE=ci by default; PROFILE=full redraws figures/)
#   make test         unit and property tests, then every notebook under strict nbval
# Both create .venv and install what they need. GPU users: see README (install your CUDA PyTorch first).

PYTHON ?= python3
VENV ?= .venv
PROFILE ?= ci
# The CPU set-up pins this torch; set TORCH_PIN= (empty) to keep a torch you installed into $(VENV) yourself.
TORCH_PIN ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: notebooks test venv clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(if $(TORCH_PIN),$(BIN)/python -m pip install --quiet "$(TORCH_PIN)")
	$(BIN)/python -m pip install --quiet -e ".[notebooks,test]"
	touch $@

notebooks: venv
	$(BIN)/python scripts/run_notebooks.py --profile $(PROFILE)

test: venv
	$(BIN)/python -m pytest -p no:cacheprovider tests
	$(BIN)/python -m pytest -p no:cacheprovider --nbval notebooks

clean:
	rm -rf out
