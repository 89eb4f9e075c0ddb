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
        "optimizer": "lars", "lr": 0.2, "weight_decay": 1.5e-6, "warmup_epochs": 10, "batch_size": 256,
        "proj_hidden_dim": 4096, "proj_output_dim": 256, "pred_hidden_dim": 4096,
        "momentum_base": 0.996,
    }
    notes = {
        "optimizer": "LARS as in the paper",
        "lr": "paper: 0.2 × batch/256",
        "weight_decay": "paper: 1.5e-6",
        "warmup_epochs": "paper: 10 warm-up epochs then cosine decay",
        "batch_size": "paper 4096; BYOL keeps most of its accuracy at 256 (Fig. 3a), which fits one GPU",
        "proj_hidden_dim": "paper: projector hidden 4096",
        "proj_output_dim": "paper: 256-d projection",
        "pred_hidden_dim": "paper: predictor hidden 4096",
        "momentum_base": "paper: τ_base=0.996, raised to 1 on a cosine",
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
