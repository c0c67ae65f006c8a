"""pytest's settings for the whole checkout: `pytest --nbval notebooks` compares the cells tagged
``nbval-tolerance`` (outputs of a training run on this CPU) with a numeric tolerance (tests/nbval_tolerance.py)."""
pytest_plugins = ("tests.nbval_tolerance",)
