"""NNCLR (Dwibedi et al., ICCV 2021): SimCLR's loss with each view's positive replaced by its nearest
neighbour in a support set of past projections.

A second worked example of an external plug-in (the conformance test installs this file as a
package with an entry point, as CONTRIBUTING.md describes): a method with a memory bank, whose loss
rises while the bank fills, so only the learning diagnostics, not "the loss falls", can judge it.
"""
from __future__ import annotations

from lightly.loss import NTXentLoss
from lightly.models.modules import NNMemoryBankModule
from lightly.models.modules.heads import NNCLRPredictionHead, NNCLRProjectionHead
from torch import Tensor

from methods.base import SSLMethod, fp32_loss


class NNCLR(SSLMethod):
    family = "contrastive"
    views = "two_augmented"
    augmentations = "symmetric"
    defaults = {
        "optimizer": "lars", "lr": 0.3, "trust_coefficient": 0.02, "weight_decay": 1e-6, "warmup": 0.1,
        "batch_size": 256, "proj_hidden_dim": 2048, "proj_output_dim": 256, "pred_hidden_dim": 4096,
        "temperature": 0.1, "support_set_size": 4096,
    }
    notes = {
        "optimizer": "paper: LARS; with LARC clipping as for the built-in LARS methods",
        "lr": "paper: 0.3 × batch/256",
        "trust_coefficient": "as the built-in LARS methods: 0.02 with LARC clipping",
        "weight_decay": "paper: 1e-6",
        "warmup": "paper: 10 warm-up epochs; a tenth of a short run",
        "batch_size": "paper 4096; 256 fits one GPU",
        "proj_hidden_dim": "paper: 3-layer projector, hidden 2048",
        "proj_output_dim": "paper: 256-d output",
        "pred_hidden_dim": "paper: predictor hidden 4096",
        "temperature": "paper: τ=0.1",
        "support_set_size": "paper 98,304 for ImageNet; 4096 keeps neighbours from recent steps on 10^4-frame sets",
    }

    def __init__(self, encoder, **hparams):
        super().__init__(encoder, **hparams)
        h = self.hparams
        self.projector = NNCLRProjectionHead(encoder.feat_dim, h["proj_hidden_dim"], h["proj_output_dim"])
        self.predictor = NNCLRPredictionHead(h["proj_output_dim"], h["pred_hidden_dim"], h["proj_output_dim"])
        self.support_set = NNMemoryBankModule(size=(h["support_set_size"], h["proj_output_dim"]))
        self.criterion = NTXentLoss(temperature=h["temperature"])

    def loss(self, views: list[Tensor]) -> Tensor:
        z0, z1 = (self.projector(self.encoder(v)) for v in views)
        p0, p1 = self.predictor(z0), self.predictor(z1)
        nn0 = self.support_set(z0.detach(), update=False)
        nn1 = self.support_set(z1.detach(), update=True)
        return 0.5 * (fp32_loss(self.criterion, nn0, p1) + fp32_loss(self.criterion, nn1, p0))
