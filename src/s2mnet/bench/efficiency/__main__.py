"""``python -m s2mnet.bench.efficiency``: see :func:`s2mnet.bench.efficiency.run.main`."""

import sys

from s2mnet.bench.efficiency.run import main

if __name__ == "__main__":
    sys.exit(main())
