"""Seeded training at one CPU thread is bitwise repeatable for every network the claims lab trains.

The claims lab's studies (docs/bench.md) run one thread per run and call their results deterministic: a
run repeated from the same seed must reach the same weights bit for bit, for S2M-Net and for the peers
(the 31 M U-Net of ``unet_dicece``, MONAI's UNet of ``monai_unet_dicece``), in channels-last as trained.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from s2mnet.models import create_model

CL = torch.channels_last
NETWORKS = {
    "s2mnet": {"widths": [8, 8, 8, 8, 16], "stem_width": 8, "k": 8, "bottleneck": 4},
    "unet": {},  # the full 31 M network: the one whose repeatability was in doubt
    "monai_unet": {},
}


def _trained_weights(name: str, steps: int = 2) -> dict[str, torch.Tensor]:
    torch.manual_seed(11)
    model = create_model(name, **NETWORKS[name]).to(memory_format=CL)
    generator = torch.Generator().manual_seed(7)
    images = torch.randn(steps, 2, 3, 32, 32, generator=generator)
    masks = (torch.rand(steps, 2, 1, 32, 32, generator=generator) > 0.7).float()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    model.train()
    for image, mask in zip(images, masks, strict=True):
        loss = nn.functional.binary_cross_entropy_with_logits(model(image.contiguous(memory_format=CL)), mask)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return {key: value.detach().clone() for key, value in model.state_dict().items()}


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_one_thread_training_is_bitwise_repeatable(name: str) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        first, second = _trained_weights(name), _trained_weights(name)
    finally:
        torch.set_num_threads(threads)
    assert first.keys() == second.keys()
    different = [key for key in first if not torch.equal(first[key], second[key])]
    assert different == []
