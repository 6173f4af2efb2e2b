#!/usr/bin/env bash
# Side by side inside nnU-Net v2 on DRIVE (published split): nnU-Net's own 2-D U-Net and 2d_s2mnet, same
# patch (128x128), batch (2), trainer (nnUNetTrainer_5epochs_30iters: 5 epochs x 30 iterations) on CPU.
# Results: docs/results/nnunet_DRIVE/README.md. Needs the nnunet extra (docs/nnunet.md).
#
#   DRIVE=/path/to/DRIVE WORK=/tmp/drive_nnunet bash docs/results/nnunet_DRIVE/run.sh
set -euo pipefail
DRIVE=${DRIVE:-../shared/data/DRIVE}
WORK=${WORK:-/tmp/drive_nnunet}
S2M=${S2M:-s2m}
ID=120
NAME=Dataset120_DRIVE
TRAINER=nnUNetTrainer_5epochs_30iters
export nnUNet_raw=$WORK/raw nnUNet_preprocessed=$WORK/pre nnUNet_results=$WORK/res
export nnUNet_n_proc_DA=${nnUNet_n_proc_DA:-1} nnUNet_def_n_proc=${nnUNet_def_n_proc:-1}
nnUNet_extTrainer=$(python -c "import s2mnet.nnunet as m; print(m.trainer_dir())")
export nnUNet_extTrainer  # finds the short trainer (and nnUNetTrainerMASL)
mkdir -p "$nnUNet_raw" "$nnUNet_preprocessed" "$nnUNet_results"

# 1. DRIVE as an nnU-Net raw dataset: 16 train + 4 val (s2m's split, seed 42) = fold 0, 20 test in imagesTs
[[ -d $nnUNet_raw/$NAME ]] || $S2M nnunet convert --data "$DRIVE" --dataset-id $ID --class-names vessel
# 2. nnU-Net's planning (its 2d plan: patch 640x640, batch 2, an 8-stage U-Net)
[[ -f $nnUNet_preprocessed/$NAME/nnUNetPlans.json ]] ||
    nnUNetv2_plan_and_preprocess -d $ID -c 2d -np 2 --verify_dataset_integrity
# 3. The CPU budget: 128x128 patches for both. 2d_unet128 = nnU-Net's 2d U-Net with 6 stages (what nnU-Net's
#    planner gives a 128 patch: pooling down to 4x4), everything else inherited from 2d.
python - "$nnUNet_preprocessed/$NAME/nnUNetPlans.json" <<'PY'
import json, sys
path = sys.argv[1]
plans = json.load(open(path))
arch = json.loads(json.dumps(plans["configurations"]["2d"]["architecture"]))
kw, n = arch["arch_kwargs"], 6
for key in ("features_per_stage", "kernel_sizes", "strides", "n_conv_per_stage"):
    kw[key] = kw[key][:n]
kw["n_conv_per_stage_decoder"], kw["n_stages"] = kw["n_conv_per_stage_decoder"][: n - 1], n
plans["configurations"]["2d_unet128"] = {"inherits_from": "2d", "patch_size": [128, 128], "architecture": arch}
json.dump(plans, open(path, "w"), indent=4)
PY
$S2M nnunet add-config --dataset $ID --patch-size 128,128
# 4. Train (fold 0), predict the 20 test images (no test-time mirroring), evaluate with nnU-Net's evaluator
for CONFIG in 2d_unet128 2d_s2mnet; do
    /usr/bin/time -f "$CONFIG train: %e s wall, %U s user, %S s sys" \
        nnUNetv2_train $ID $CONFIG 0 -tr $TRAINER -device cpu
    /usr/bin/time -f "$CONFIG predict: %e s wall, %U s user, %S s sys" \
        nnUNetv2_predict -i "$nnUNet_raw/$NAME/imagesTs" -o "$WORK/pred_$CONFIG" -d $ID -c $CONFIG -f 0 \
        -tr $TRAINER -device cpu --disable_tta -npp 1 -nps 1
    nnUNetv2_evaluate_folder "$nnUNet_raw/$NAME/labelsTs" "$WORK/pred_$CONFIG" \
        -djfile "$nnUNet_results/$NAME/${TRAINER}__nnUNetPlans__$CONFIG/dataset.json" \
        -pfile "$nnUNet_results/$NAME/${TRAINER}__nnUNetPlans__$CONFIG/plans.json"
done
