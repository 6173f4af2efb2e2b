"""``python -m s2mnet.bench.ablation --job JSON``: the per-run worker of ``s2m bench ablation --jobs N``."""

import sys

from s2mnet.bench.ablation.worker import main

sys.exit(main())
