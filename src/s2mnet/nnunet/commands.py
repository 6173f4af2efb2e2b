"""``s2m nnunet add-config | convert``: S2M-Net inside nnU-Net v2 (docs/nnunet.md).

``register(commands)`` adds the parser (argparse only); the work's imports happen inside :func:`run`, so
``s2m --help`` stays fast. Neither command imports nnunetv2.
"""

from __future__ import annotations

import argparse
import json
import sys

from s2mnet.errors import S2MError


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``nnunet`` with its ``add-config`` and ``convert`` sub-commands to the ``s2m`` parser."""
    nnunet = commands.add_parser(
        "nnunet",
        help="S2M-Net inside nnU-Net v2: add the 2d_s2mnet configuration, convert datasets",
        description="Use S2M-Net inside nnU-Net v2 (docs/nnunet.md): `convert` writes any dataset s2m reads "
        "as an nnU-Net raw dataset with the same split; after nnUNetv2_plan_and_preprocess, `add-config` "
        "adds the 2d_s2mnet configuration; then nnUNetv2_train ID 2d_s2mnet FOLD.",
    )
    nnunet.set_defaults(handler=lambda _args: _print_help(nnunet))
    actions = nnunet.add_subparsers(title="actions", metavar="ACTION")

    add = actions.add_parser(
        "add-config",
        help="add the 2d_s2mnet configuration to a planned dataset's plans (idempotent)",
        description="Adds a configuration (default 2d_s2mnet) to $nnUNet_preprocessed/DatasetXXX_Name/"
        "nnUNetPlans.json that inherits nnU-Net's 2d configuration and replaces its architecture by "
        "S2M-Net (s2mnet.nnunet.network.S2MNetNNUNet). Run it after nnUNetv2_plan_and_preprocess -d ID "
        "-c 2d; running it again changes nothing.",
    )
    add.add_argument("--dataset", "-d", required=True, help="nnU-Net dataset id (4) or name (Dataset004_X)")
    add.add_argument("--preprocessed", help="nnU-Net's preprocessed folder (default: $nnUNet_preprocessed)")
    add.add_argument("--plans", default="nnUNetPlans", help="plans identifier (default nnUNetPlans)")
    add.add_argument("--configuration", default="2d_s2mnet", help="name of the added configuration")
    add.add_argument("--base", default="2d", help="2-D configuration to inherit from (default 2d)")
    add.add_argument("--batch-size", type=int, help="batch size instead of the inherited one")
    add.add_argument(
        "--patch-size", type=_size, metavar="H,W", help="patch size instead of 2d's (rounded up to ×32)"
    )
    add.add_argument(
        "--arch-kwargs",
        type=_json_object,
        metavar="JSON",
        help='extra S2M-Net arguments, e.g. \'{"routing": "none"}\' (docs/model.md lists them)',
    )
    add.set_defaults(handler=run, action="add-config")

    convert = actions.add_parser(
        "convert",
        help="write a dataset s2m reads as an nnU-Net raw dataset with s2m's split",
        description="Reads DIR as `s2m train` does and writes $nnUNet_raw/DatasetID_Name/ (imagesTr, "
        "labelsTr, imagesTs/labelsTs for the test split, dataset.json, splits_final.json = s2m's "
        "train/val split as nnU-Net fold 0).",
    )
    convert.add_argument("--data", required=True, help="dataset folder (any layout s2m reads)")
    convert.add_argument("--dataset-id", type=int, required=True, help="nnU-Net dataset id, 1..999")
    convert.add_argument("--name", help="dataset name (default: the folder's name)")
    convert.add_argument("--out", help="nnU-Net raw folder (default: $nnUNet_raw)")
    convert.add_argument(
        "--seed", type=int, default=42, help="split seed, as `s2m train --seed` (default 42)"
    )
    convert.add_argument(
        "--splits",
        help="an s2m split file (a run's splits.json) instead of the seed; a cross-validation run "
        "(s2m train --folds K) or its splits.json gives nnU-Net its K folds",
    )
    convert.add_argument(
        "--class-names", type=_names, metavar="A,B", help="foreground class names (default: foreground)"
    )
    convert.add_argument("--overwrite", action="store_true", help="replace an earlier conversion's folder")
    convert.set_defaults(handler=run, action="convert")


def _print_help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _size(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.replace("x", ",").split(",") if v.strip()]
    except ValueError:
        values = []
    if len(values) != 2 or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected H,W (two positive integers), got {text!r}")
    return values


def _names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected one or more comma-separated names")
    return names


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"not JSON ({error.msg})") from error
    except RecursionError:
        raise argparse.ArgumentTypeError("JSON nested too deeply") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError('expected a JSON object such as {"routing": "none"}')
    return value


def run(args: argparse.Namespace) -> int:
    """Run ``add-config`` or ``convert``; returns 0. User errors are raised as :class:`S2MError`."""
    action = getattr(args, "action", None)
    if action == "add-config":
        return _add_config(args)
    if action == "convert":
        return _convert(args)
    raise S2MError("s2m nnunet: choose an action, add-config or convert (s2m nnunet --help)")


def _add_config(args: argparse.Namespace) -> int:
    from s2mnet.nnunet.plans import add_configuration

    result = add_configuration(
        args.dataset,
        preprocessed=args.preprocessed,
        plans_name=args.plans,
        configuration=args.configuration,
        base=args.base,
        arch_kwargs=args.arch_kwargs,
        batch_size=args.batch_size,
        patch_size=args.patch_size,
    )
    patch = "x".join(map(str, result["resolved_patch_size"]))
    print(
        f"{result['status']}: configuration {result['configuration']} in {result['plans']} "
        f"(inherits {args.base}; S2M-Net, patch {patch}, batch {result['batch_size']})"
    )
    if result["splits"]:
        print(f"split: {result['splits']}")
    if not result["preprocessed_data"]:
        print(
            f"note: {args.base}'s preprocessed data is not there yet; run nnUNetv2_preprocess -c {args.base}"
        )
    from s2mnet.nnunet import trainer_dir

    dataset = result["dataset"]
    print(
        "next:\n"
        f"  nnUNetv2_train {dataset} {result['configuration']} 0\n"
        f"  nnUNetv2_predict -i INPUT -o OUTPUT -d {dataset} -c {result['configuration']} -f 0\n"
        "MASL as the loss (-tr nnUNetTrainerMASL), or the short CPU trainers:\n"
        f"  export nnUNet_extTrainer={trainer_dir()}"
    )
    return 0


def _convert(args: argparse.Namespace) -> int:
    from s2mnet.nnunet.convert import convert_dataset

    def progress(done: int, total: int) -> None:
        if sys.stderr.isatty():
            print(f"\rwriting case {done}/{total}", end="" if done < total else "\n", file=sys.stderr)

    result = convert_dataset(
        args.data,
        args.dataset_id,
        out=args.out,
        name=args.name,
        seed=args.seed,
        splits_file=args.splits,
        names=args.class_names,
        overwrite=args.overwrite,
        progress=progress,
    )
    labels = ", ".join(f"{k}={v}" for k, v in result["labels"].items())
    print(
        f"wrote {result['folder']}: train {result['train']}, val {result['val']} "
        + ("(nnU-Net fold 0), " if result.get("folds", 1) == 1 else f"({result['folds']} folds), ")
        + f"test {result['test']} (imagesTs); channels {', '.join(result['channels'].values())}; "
        f"labels {labels}\nsplit: {result['split_source']}\n"
        f"next: nnUNetv2_plan_and_preprocess -d {args.dataset_id} -c 2d --verify_dataset_integrity\n"
        f"      s2m nnunet add-config --dataset {args.dataset_id}"
    )
    return 0
