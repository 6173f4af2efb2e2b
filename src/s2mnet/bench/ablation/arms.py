"""The arms of ``s2m bench ablation``: what each trains, and with which seeds.

Every arm is the reference ``paper`` with one change. ``paper`` is the method as the paper describes it:
S2M-Net with SSTM K=32 and MASL with the paper's learnable weighting through the normalised ratio
(``weighting="paper"``), the ungated structure term (``gate_structure=False``) and the initial weights
(1, 1, 1, 0.5, 0.5). Every MASL arm spells out all of its MASL arguments, so a record says exactly what
was trained.

Seeds: the *core* arms (``paper``, ``paper_aa``, ``no_sstm``, ``attention``, ``dicece``, ``unet_dicece``,
``monai_unet_dicece``) run every seed of ``--seeds`` (≥ 5 for a study), the others its first
``--other-seeds`` (3). A seed fixes the initialisation, the data order and the augmentation; the split is
the same for all runs. A run is paired with the ``paper`` run of the same seed, except ``paper_aa``: it is
``paper`` again on the seeds shifted by :data:`AA_SEED_OFFSET` (disjoint from every other arm's), paired
with ``paper`` by position (seed s + offset ↔ seed s). It is the A/A control: whatever it shows is seed
noise, and the statistics must call it not different.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from s2mnet.errors import S2MError
from s2mnet.registry import Registry

REFERENCE = "paper"
AA_ARM = "paper_aa"
#: ``paper_aa`` trains seed ``s + AA_SEED_OFFSET`` for each core seed ``s``.
AA_SEED_OFFSET = 10_000
#: Default core seeds (5) and how many of them the other arms use.
DEFAULT_SEEDS = (42, 123, 456, 789, 1011)
DEFAULT_OTHER_SEEDS = 3
#: ``model_args`` value resolved at run time to :func:`s2mnet.models.s2mnet.full_spectrum_k` of the
#: training size (``kfull``).
FULL_K = "full"

#: MASL exactly as the paper describes it (method.md §3).
PAPER_MASL: dict[str, Any] = {
    "weighting": "paper",
    "gate_structure": False,
    "initial_weights": [1.0, 1.0, 1.0, 0.5, 0.5],
    "modulation": True,
    "components": ["core", "boundary", "structure", "scale", "texture"],
}


@dataclass(frozen=True)
class Arm:
    """One arm: a registered model and loss with their overrides, and its seed role."""

    model: str
    loss: str
    model_args: dict[str, Any] = field(default_factory=dict)
    loss_args: dict[str, Any] = field(default_factory=dict)
    core: bool = False
    seed_offset: int = 0
    #: The arm's epoch cap as a multiple of the study's. Equal compute, not equal steps, for an arm whose
    #: step is much cheaper: MONAI's UNet steps 3x faster than S2M-Net on the CPU (docs/speed.md) and had
    #: not plateaued at the S2M-Net cap on DRIVE (0.59 validation Dice, still rising); S2M-Net without
    #: MRF-SE trains 288 DRIVE steps in 101-122 s against `paper`'s 365-580 s, and 3 of its 4 runs had not
    #: plateaued at the common cap.
    cap_scale: int = 1


ARMS: Registry[Arm] = Registry("arm", S2MError)


def _paper_masl(**changes: Any) -> dict[str, Any]:
    return {**PAPER_MASL, **changes}


def _add(name: str, description: str, model: str = "s2mnet", loss: str = "masl", **fields: Any) -> None:
    if loss == "masl" and "loss_args" not in fields:
        fields["loss_args"] = _paper_masl()
    ARMS.add(name, Arm(model, loss, **fields), description)


_add("paper", "reference: S2M-Net (SSTM K=32) + MASL as the paper describes it", core=True)
_add("paper_aa", "A/A control: `paper` again on disjoint seeds", core=True, seed_offset=AA_SEED_OFFSET)
_add("ours", "our default MASL (uncertainty weighting, overlap-gated structure term)", loss_args={})
_add("no_sstm", "no token mixer (w/o SSTM)", model="s2mnet_none", core=True)
_add("attention", "parameter-matched global self-attention instead of SSTM", "s2mnet_attention", core=True)
_add("k16", "SSTM band K=16", model="s2mnet_k16")
_add(
    "kfull",
    "SSTM keeps the whole spectrum at the training size (K = each stage's map side)",
    model_args={"k": FULL_K},
)
_add("cfilter", "SSTM with a complex K×K filter (the real one is zero-phase)", model="s2mnet_cfilter")
_add("dicece", "Dice-CE instead of MASL", loss="dicece", core=True)
_add(
    "masl_fixed",
    "MASL with all weights fixed at 1 (as the authors' code)",
    loss_args=_paper_masl(weighting="fixed", initial_weights=[1.0] * 5),
)
_add("masl_nomod", "MASL without morphology modulation (α = 1)", loss_args=_paper_masl(modulation=False))
_add(
    "no_boundary",
    "MASL without the boundary component",
    loss_args=_paper_masl(components=["core", "structure", "scale", "texture"]),
)
_add(
    "no_bfd",
    "plain decoder (the authors' w/o BFD): upsample, concatenate the skip, 2 conv",
    model="s2mnet_plaindec",
)
_add("bfd_norouting", "BFD without routing (region and refined paths concatenated)", model="s2mnet_nobfd")
_add(
    "no_mrfse",
    "no MRF-SE blocks (3 x the cap: its step costs about a third)",
    model="s2mnet_nomrfse",
    cap_scale=3,
)
_add("unet_dicece", "classic U-Net (31 M) + Dice-CE", model="unet", loss="dicece", core=True)
_add(
    "monai_unet_dicece",
    "MONAI UNet + Dice-CE (the peer a user would pick)",
    "monai_unet",
    "dicece",
    core=True,
    cap_scale=3,
)
_add(
    "monai_unet_dicece_3x",
    "MONAI UNet + Dice-CE at equal compute: 3 x the steps, with its own 3 x schedule (beside the main arm)",
    "monai_unet",
    "dicece",
    cap_scale=3,
)


def arm(name: str) -> Arm:
    """The :class:`Arm` registered as ``name`` (an unknown name raises :class:`S2MError`)."""
    return ARMS.get(name).target


def core_arms() -> list[str]:
    """Names of the core arms (≥ 5 seeds), in registration order."""
    return [name for name in ARMS if arm(name).core]


def parse_arms(text: str) -> list[str]:
    """``"all"``, ``"core"`` or a comma list of arm names; the reference is always added first."""
    text = text.strip()
    if text == "all":
        names = ARMS.names()
    elif text == "core":
        names = core_arms()
    else:
        names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in ARMS]
    if unknown:
        raise S2MError(f"--arms: unknown {unknown}; choose from all, core, {', '.join(ARMS)}")
    return list(dict.fromkeys([REFERENCE, *names]))


def arm_seeds(name: str, seeds: Sequence[int], other_seeds: int = DEFAULT_OTHER_SEEDS) -> list[int]:
    """The training seeds of arm ``name``: all ``seeds`` for a core arm, else the first ``other_seeds``;
    shifted by the arm's seed offset (``paper_aa``)."""
    entry = arm(name)
    chosen = list(seeds) if entry.core else list(seeds)[:other_seeds]
    return [seed + entry.seed_offset for seed in chosen]


def reference_seed(name: str, seed: int) -> int:
    """The seed of the ``paper`` run that the run (``name``, ``seed``) is paired with."""
    return seed - arm(name).seed_offset if name in ARMS else seed


def resolve_model_args(name: str, train_size: int | None) -> dict[str, Any]:
    """The arm's model overrides with :data:`FULL_K` replaced by the per-stage K of the training size.

    Raises:
        S2MError: ``kfull`` without a known training size (give ``--size`` or ``--patch-size``).
    """
    args = dict(arm(name).model_args)
    if args.get("k") == FULL_K:
        if not train_size:
            raise S2MError(
                f"arm {name!r} needs the training size: give --patch-size (patch mode) or --size (resize)"
            )
        from s2mnet.models.s2mnet import full_spectrum_k

        args["k"] = full_spectrum_k(int(train_size))
    return args
