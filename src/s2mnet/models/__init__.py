"""S2M-Net, its token mixers, the baselines, and the model registry (docs/model.md)."""

from s2mnet.errors import ModelConfigError
from s2mnet.models.attention import AttentionMixer
from s2mnet.models.blocks import BFD, MRFSE
from s2mnet.models.fusion import optimize_for_inference
from s2mnet.models.registry import create_model, describe_models, list_models
from s2mnet.models.s2mnet import S2MNet
from s2mnet.models.spectral import band_filter, band_filter_fft, band_filter_matmul
from s2mnet.models.sstm import SSTM
from s2mnet.models.sstm_official import OfficialSSTM
from s2mnet.models.unet import UNet

__all__ = [
    "BFD",
    "MRFSE",
    "SSTM",
    "AttentionMixer",
    "ModelConfigError",
    "OfficialSSTM",
    "S2MNet",
    "UNet",
    "band_filter",
    "band_filter_fft",
    "band_filter_matmul",
    "create_model",
    "describe_models",
    "list_models",
    "optimize_for_inference",
]
