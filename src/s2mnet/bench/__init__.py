"""``s2m bench``: measure the paper's claims side by side.

* :mod:`s2mnet.bench.efficiency` — parameters, FLOPs, latency, training-step time, memory, scaling;
* :mod:`s2mnet.bench.spectral` — spectral energy inside the central K×K block (method.md §2, Table 4);
* :mod:`s2mnet.bench.ablation` — ablation variants × seeds, trained and evaluated on one held-out split;
* :mod:`s2mnet.bench.stats` — mean ± sd, paired tests, Bonferroni, scaling exponents.

The command line lives in :mod:`s2mnet.cli.bench`; conventions are documented in ``docs/bench.md``.
"""

#: Defaults shared by the command line and the modules (kept here so that ``s2m --help`` imports no torch).
DEFAULT_SIZES = (128, 256, 352, 512, 768, 1024)
DEFAULT_MODELS = (
    "s2mnet",
    "s2mnet_attention",
    "s2mnet_none",
    "s2mnet_official",
    "unet",
    "monai_unet",
    "monai_swinunetr",
)
DEFAULT_KS = (8, 16, 24, 32, 48, 64)
PAPER_THRESHOLD = 0.93
