"""Denoising autoencoder: the encoder's last feature map, decoded by a small conv decoder, rebuilds the
clean frame from its augmented view (MSE)."""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from methods.base import SSLMethod, fp32_loss
from methods.registry import register_method

UPSAMPLINGS = 5  # all three backbones reduce by 32


def _up(c_in: int, c_out: int) -> nn.Sequential:
    # Upsample + conv rather than transposed conv: no checkerboard artefacts in the reconstructions.
    return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                         nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


@register_method("ae")
class AutoEncoder(SSLMethod):
    family = "reconstruction"
    views = "augmented_and_clean"
    defaults = {
        "optimizer": "adamw", "lr": 1e-3, "weight_decay": 1e-4, "warmup": 0.05, "batch_size": 256,
        "decoder_width": 256,
    }
    notes = {
        "optimizer": "AdamW: the usual choice for conv autoencoders (and MAE's decoder training)",
        "lr": "1e-3 per 256 samples: Adam's standard step size",
        "weight_decay": "1e-4: light regularisation; reconstruction overfits little on video frames",
        "warmup": "a short warm-up keeps the freshly initialised decoder from wrecking the encoder early",
        "batch_size": "256, as for the other methods so their costs compare",
        "decoder_width": "channels after the 1×1 reduction, halved at each of the 5 upsamplings (256 → 16)",
    }

    def __init__(self, encoder, **hparams):
        super().__init__(encoder, **hparams)
        width = self.hparams["decoder_width"]
        widths = [max(width >> i, 8) for i in range(UPSAMPLINGS + 1)]
        self.decoder = nn.Sequential(
            nn.Conv2d(encoder.feat_dim, widths[0], 1),
            *(_up(widths[i], widths[i + 1]) for i in range(UPSAMPLINGS)),
            nn.Conv2d(widths[-1], 1, 3, padding=1),
            nn.Sigmoid(),
        )

    def loss(self, views: list[Tensor]) -> Tensor:
        augmented, clean = views
        recon = self.decoder(self.encoder.forward_features(augmented))
        if recon.shape[-2:] != clean.shape[-2:]:  # sizes that are not multiples of 32
            recon = F.interpolate(recon, size=clean.shape[-2:], mode="bilinear", align_corners=False)
        return fp32_loss(F.mse_loss, recon, clean)
