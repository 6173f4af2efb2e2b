"""Deployment without the training stack: numpy preprocessing and the onnxruntime predictor.

Nothing in this package imports torch, MONAI or albumentations at module level, so ``s2m predict --model
FILE.onnx`` runs with ``numpy``, ``Pillow``, ``scikit-image`` (CLAHE plans only) and ``onnxruntime``.
"""
