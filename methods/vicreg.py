"""VICReg (Bardes, Ponce & LeCun, ICLR 2022): variance-invariance-covariance regularisation."""
from __future__ import annotations

from lightly.loss import VICRegLoss
from lightly.models.modules.heads import VICRegProjectionHead
from torch import Tensor

from methods.base import SSLMethod, fp32_loss
from methods.registry import register_method


@register_method("vicreg")
class VICReg(SSLMethod):
    family = "information"
    views = "two_augmented"
    defaults = {
        "optimizer": "lars", "lr": 0.3, "trust_coefficient": 0.02, "weight_decay": 1e-4, "warmup": 0.1,
        "batch_size": 256,
        "proj_hidden_dim": 2048, "proj_output_dim": 2048,
        "sim_coeff": 25.0, "std_coeff": 25.0, "cov_coeff": 1.0,
    }
    notes = {
        "optimizer": "LARS as in the paper, with LARC clipping (solo-learn's small-batch recipe)",
        "lr": "paper: 0.2 per 256 samples for 1000 ImageNet epochs; 0.3 as in solo-learn's small-data recipe",
        "trust_coefficient": "solo-learn: 0.02 with LARC clipping; a layer moves by at most 2 % of its norm per step",
        "weight_decay": "paper 1e-6; 1e-4 as solo-learn, which keeps LARC-clipped weights from growing unchecked",
        "warmup": "paper: 10 warm-up epochs of 1000; a tenth of a short run keeps LARS stable at the start",
        "batch_size": "paper 2048; VICReg needs no large batch (no negatives), 256 fits one GPU on small US sets",
        "proj_hidden_dim": "paper 8192; 2048 keeps the projector in proportion to ResNet-18/US-scale data",
        "proj_output_dim": "paper 8192 (accuracy grows slowly with size); 2048 as for the hidden layers",
        "sim_coeff": "paper λ=25 (invariance weight)",
        "std_coeff": "paper μ=25 (variance weight)",
        "cov_coeff": "paper ν=1 (covariance weight)",
    }

    def __init__(self, encoder, **hparams):
        super().__init__(encoder, **hparams)
        h = self.hparams
        self.projector = VICRegProjectionHead(encoder.feat_dim, h["proj_hidden_dim"], h["proj_output_dim"])
        self.criterion = VICRegLoss(lambda_param=h["sim_coeff"], mu_param=h["std_coeff"], nu_param=h["cov_coeff"])

    def loss(self, views: list[Tensor]) -> Tensor:
        z0, z1 = (self.projector(self.encoder(v)) for v in views)
        return fp32_loss(self.criterion, z0, z1)
