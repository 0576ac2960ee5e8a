"""A trainer that cannot even answer --help (its dependencies are missing, say)."""

import sys

print("ModuleNotFoundError: No module named 'tensorflow_hub'", file=sys.stderr)
sys.exit(1)
