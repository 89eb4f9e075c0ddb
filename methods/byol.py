"""BYOL (Grill et al., NeurIPS 2020): online network predicts a momentum target; no negatives."""
from __future__ import annotations

import copy

from lightly.loss import NegativeCosineSimilarity
from lightly.models.modules.heads import BYOLPredictionHead, BYOLProjectionHead
from lightly.models.utils import deactivate_requires_grad
from torch import Tensor, nn

from methods.base import SSLMethod, fp32_loss
from methods.registry import register_method


@register_method("byol")
class BYOL(SSLMethod):
    family = "distillation"
    views = "two_augmented"
    defaults = {
        "optimizer": "lars", "lr": 1.0, "trust_coefficient": 0.02, "weight_decay": 1e-5, "warmup": 0.1,
        "batch_size": 256,
        "proj_hidden_dim": 4096, "proj_output_dim": 256, "pred_hidden_dim": 4096,
        "momentum_base": 0.99,
    }
    notes = {
        "optimizer": "LARS as in the paper, with LARC clipping (solo-learn's small-batch recipe)",
        "lr": "paper 0.2 × batch/256 for 1000 ImageNet epochs; 1.0 as in solo-learn's small-data recipe",
        "trust_coefficient": "solo-learn: 0.02 with LARC clipping; a layer moves by at most 2 % of its norm per step",
        "weight_decay": "paper 1.5e-6; 1e-5 as solo-learn's small-data recipe",
        "warmup": "paper: 10 warm-up epochs of 1000; a tenth of a short run keeps LARS stable at the start",
        "batch_size": "paper 4096; BYOL keeps most of its accuracy at 256 (Fig. 3a), which fits one GPU",
        "proj_hidden_dim": "paper: projector hidden 4096",
        "proj_output_dim": "paper: 256-d projection",
        "pred_hidden_dim": "paper: predictor hidden 4096",
        "momentum_base": "paper τ_base=0.996 for 300+ epochs; 0.99 (solo-learn) lets the target follow within a short run; raised to 1 on a cosine",
    }

    def __init__(self, encoder, **hparams):
        super().__init__(encoder, **hparams)
        h = self.hparams
        self.projector = BYOLProjectionHead(encoder.feat_dim, h["proj_hidden_dim"], h["proj_output_dim"])
        self.predictor = BYOLPredictionHead(h["proj_output_dim"], h["pred_hidden_dim"], h["proj_output_dim"])
        self.target_encoder = copy.deepcopy(encoder)
        self.target_projector = copy.deepcopy(self.projector)
        deactivate_requires_grad(self.target_encoder)
        deactivate_requires_grad(self.target_projector)
        self.criterion = NegativeCosineSimilarity()

    def momentum_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        return [(self.encoder, self.target_encoder), (self.projector, self.target_projector)]

    def loss(self, views: list[Tensor]) -> Tensor:
        p0, p1 = (self.predictor(self.projector(self.encoder(v))) for v in views)
        z0, z1 = (self.target_projector(self.target_encoder(v)).detach() for v in views)
        # Symmetrised as in the paper: each view predicts the other's target.
        return 0.5 * (fp32_loss(self.criterion, p0, z1) + fp32_loss(self.criterion, p1, z0))
