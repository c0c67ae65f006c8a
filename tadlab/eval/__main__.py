"""``python -m tadlab.eval``: see :mod:`tadlab.eval.cli`."""
import sys

from tadlab.eval.cli import main

sys.exit(main())
