"""``python -m rlcg ...``: the ``rlcg`` command where its script is not on PATH (e.g. a checkout on
PYTHONPATH, as scripts/gpu_check.sh runs it on a lent GPU machine)."""

import sys

from rlcg.cli import main

if __name__ == "__main__":
    sys.exit(main())
