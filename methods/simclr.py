"""SimCLR (Chen et al., ICML 2020): NT-Xent over in-batch negatives."""
from __future__ import annotations

from lightly.loss import NTXentLoss
from lightly.models.modules.heads import SimCLRProjectionHead
from torch import Tensor

from methods.base import SSLMethod, fp32_loss
from methods.registry import register_method


@register_method("simclr")
class SimCLR(SSLMethod):
    family = "contrastive"
    views = "two_augmented"
    augmentations = "symmetric"
    defaults = {
        "optimizer": "lars", "lr": 1.2, "lr_scaling": "sqrt", "trust_coefficient": 0.02, "weight_decay": 1e-6,
        "warmup": 0.1, "batch_size": 256, "proj_hidden_dim": 2048, "proj_output_dim": 128, "temperature": 0.5,
    }
    notes = {
        "optimizer": "LARS as in the paper, with LARC clipping (solo-learn's small-batch recipe)",
        "lr": "paper App. B.1: 0.075·√batch for small batches = 1.2 at 256, scaled by √(batch/256)",
        "lr_scaling": "paper App. B.1: square-root scaling works better than linear at small batches",
        "trust_coefficient": "solo-learn: 0.02 with LARC clipping; a layer moves by at most 2 % of its norm per step",
        "weight_decay": "paper: 1e-6",
        "warmup": "paper: 10 warm-up epochs of 100; a tenth of the run",
        "batch_size": "paper 4096 on TPUs; 256 fits one GPU (Fig. 9: gap to large batches shrinks with epochs)",
        "proj_hidden_dim": "paper: 2-layer MLP, hidden = 2048 (ResNet-50 width)",
        "proj_output_dim": "paper: 128-d output",
        "temperature": "paper: 0.1 goes with batch 4096 on ImageNet; 0.5 was best in its CIFAR-10 runs (App. B.9), nearer our small batches",
    }

    def __init__(self, encoder, **hparams):
        super().__init__(encoder, **hparams)
        h = self.hparams
        self.projector = SimCLRProjectionHead(encoder.feat_dim, h["proj_hidden_dim"], h["proj_output_dim"])
        self.criterion = NTXentLoss(temperature=h["temperature"])

    def loss(self, views: list[Tensor]) -> Tensor:
        z0, z1 = (self.projector(self.encoder(v)) for v in views)
        return fp32_loss(self.criterion, z0, z1)
