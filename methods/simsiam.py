"""SimSiam (Chen & He, CVPR 2021): predictor plus stop-gradient; no negatives, no momentum encoder."""
from __future__ import annotations

from lightly.loss import NegativeCosineSimilarity
from lightly.models.modules.heads import SimSiamPredictionHead, SimSiamProjectionHead
from torch import Tensor

from methods.base import SSLMethod, fp32_loss
from methods.registry import register_method


@register_method("simsiam")
class SimSiam(SSLMethod):
    family = "distillation"
    views = "two_augmented"
    augmentations = "symmetric"
    defaults = {
        "optimizer": "sgd", "lr": 0.5, "weight_decay": 1e-5, "warmup": 0.0, "batch_size": 256,
        "proj_hidden_dim": 2048, "proj_output_dim": 2048, "pred_hidden_dim": 512,
    }
    notes = {
        "optimizer": "paper: SGD, momentum 0.9",
        "lr": "paper 0.05 × batch/256 for 100-800 ImageNet epochs (it moved the encoder by 2e-3 in 30 steps); 0.5 as solo-learn's small-data recipe; cosine decay, the predictor keeps a fixed lr",
        "weight_decay": "paper 1e-4; 1e-5 as solo-learn's small-data recipe",
        "warmup": "paper: no warm-up",
        "batch_size": "paper 512; its batch-size table gives 256 the same accuracy (68.1), and 256 fits one GPU",
        "proj_hidden_dim": "paper: 3-layer projector, hidden 2048",
        "proj_output_dim": "paper: 2048-d output",
        "pred_hidden_dim": "paper: bottleneck predictor, hidden 512",
    }

    def __init__(self, encoder, **hparams):
        super().__init__(encoder, **hparams)
        h = self.hparams
        self.projector = SimSiamProjectionHead(encoder.feat_dim, h["proj_hidden_dim"], h["proj_output_dim"])
        self.predictor = SimSiamPredictionHead(h["proj_output_dim"], h["pred_hidden_dim"], h["proj_output_dim"])
        self.criterion = NegativeCosineSimilarity()

    def parameter_groups(self) -> list[dict]:
        predictor = set(self.predictor.parameters())
        groups = [{**g, "params": [p for p in g["params"] if p not in predictor]} for g in super().parameter_groups()]
        return [g for g in groups if g["params"]] + [
            {"name": "predictor", "params": list(self.predictor.parameters()), "fixed_lr": True}]

    def loss(self, views: list[Tensor]) -> Tensor:
        z0, z1 = (self.projector(self.encoder(v)) for v in views)
        p0, p1 = self.predictor(z0), self.predictor(z1)
        return 0.5 * (fp32_loss(self.criterion, p0, z1.detach()) + fp32_loss(self.criterion, p1, z0.detach()))
