"""Barlow Twins (Zbontar et al., ICML 2021): cross-correlation of the two views' embeddings → identity."""
from __future__ import annotations

from lightly.loss import BarlowTwinsLoss
from lightly.models.modules.heads import BarlowTwinsProjectionHead
from torch import Tensor

from methods.base import SSLMethod, fp32_loss
from methods.registry import register_method


@register_method("barlowtwins")
class BarlowTwins(SSLMethod):
    family = "information"
    views = "two_augmented"
    defaults = {
        "optimizer": "lars", "lr": 0.3, "trust_coefficient": 1e-3, "weight_decay": 1e-4, "warmup": 0.1,
        "batch_size": 256,
        "bias_lr_scale": 0.024, "proj_hidden_dim": 2048, "proj_output_dim": 2048, "lambda_offdiag": 5e-3,
        "scale_loss": 0.1,
    }
    notes = {
        "optimizer": "LARS as in the paper, with LARC clipping (solo-learn's small-batch recipe)",
        "lr": "paper 0.2 × batch/256 for 1000 ImageNet epochs; 0.3 as in solo-learn's small-data recipe",
        "trust_coefficient": "paper's LARS η 1e-3; with LARC clipping a layer moves by at most 0.1 % of its norm per step, near the paper's own 0.16 % (lr 1.6 × η at batch 2048). solo-learn's 0.02 (2 %) could not lower the loss on one fixed batch (244 → 396 in 60 steps; 0.002: → 33; Adam: → 28) and on the cpu track moved the weights by 2.3× their norm and collapsed the features (effective rank 2.7 and 1.6, pool k-NN +0.1, seeds 0 and 1), at batch 64 and at 256 alike (rank 1.6); 0.002: rank 9, 0.0005: pool k-NN −3.1; 1e-3: rank 171 / 122 / 193 and pool k-NN +8.3 / +3.3 / +4.9 (seeds 0 / 1 / 2; cpu preset, 150 steps). It delays the collapse, not prevents it: rank 15 / 4.6 / 3.1 at 300 / 600 / 1200 steps (cpu-v3 learning curve; README, Barlow Twins' collapse)",
        "weight_decay": "paper 1.5e-6; 1e-4 as solo-learn: with LARC steps of up to 2 % a smaller decay let the weights grow 4× in 150 steps and the features fall to an effective rank of 2.6 (smoke, measured before the trust coefficient was lowered)",
        "warmup": "paper: 10 warm-up epochs of 1000; a tenth of a short run keeps LARS stable at the start",
        "batch_size": "paper 2048; Fig. 2: Barlow Twins holds up at 256, which fits one GPU",
        "bias_lr_scale": "paper: biases and BN at lr 0.0048 = 0.024 × the weights' 0.2",
        "proj_hidden_dim": "paper 8192; 2048 as in lightly's single-GPU ResNet-18 examples, in proportion to US-scale data",
        "proj_output_dim": "paper 8192 (Fig. 4: accuracy grows slowly past 2048); 2048 for US-scale data",
        "lambda_offdiag": "paper: λ=5e-3 off-diagonal weight",
        "scale_loss": "solo-learn's 0.1: unscaled (~2,000 at 2048-d) the loss gave the biases and norms, which LARS does not adapt, steps that collapsed the features at batch 64 (smoke, 60 steps, measured: pool k-NN macro-F1 0.131 → 0.129 unscaled and at lr 0.1/0.03/0.005 or a 512-d output ≤ 0.151; 0.218 at 0.1)",
    }

    def __init__(self, encoder, **hparams):
        super().__init__(encoder, **hparams)
        h = self.hparams
        self.projector = BarlowTwinsProjectionHead(encoder.feat_dim, h["proj_hidden_dim"], h["proj_output_dim"])
        self.criterion = BarlowTwinsLoss(lambda_param=h["lambda_offdiag"])

    def parameter_groups(self) -> list[dict]:
        groups = super().parameter_groups()
        for g in groups:
            if g["name"] == "bias_norm":
                g["lr_scale"] = self.hparams["bias_lr_scale"]
        return groups

    def loss(self, views: list[Tensor]) -> Tensor:
        z0, z1 = (self.projector(self.encoder(v)) for v in views)
        return self.hparams["scale_loss"] * fp32_loss(self.criterion, z0, z1)
