"""MoCo v2 (Chen, Fan, Girshick & He, 2020): momentum key encoder and a queue of negatives.

v2-style queue rather than v3: the queue gives many negatives at the small single-GPU batches that
ultrasound data sets call for, where v3's in-batch negatives need batches of 4096.

Shuffling BN (the paper, section 3.3): a query and its positive key must not be normalised with the
statistics of one and the same batch, or the encoder tells the positive (normalised with this batch)
from the queued negatives (normalised with earlier batches) by those statistics instead of by the
image. The paper shuffles keys across 8 GPUs; on one device this is the split form of its CIFAR demo
(SplitBatchNorm): queries run through BatchNorm in `bn_splits` groups, and keys in as many groups of
a random permutation of the batch. Measured on the cpu track (150 steps of 64, learning rate 1.2,
pretraining seed 0): pool k-NN macro-F1 20.1 → 14.6 without it, 20.1 → 24.1 with 4 groups.
"""
from __future__ import annotations

import copy

import torch
from lightly.loss import NTXentLoss
from lightly.models.modules.heads import MoCoProjectionHead
from lightly.models.utils import deactivate_requires_grad
from torch import Tensor, nn

from methods.base import SSLMethod, fp32_loss
from methods.registry import register_method


@register_method("moco")
class MoCo(SSLMethod):
    family = "contrastive"
    views = "two_augmented"
    augmentations = "symmetric"
    defaults = {
        "optimizer": "sgd", "lr": 0.3, "weight_decay": 1e-4, "warmup": 0.0, "batch_size": 256,
        "proj_hidden_dim": 2048, "proj_output_dim": 128, "temperature": 0.2,
        "queue_size": 4096, "momentum_base": 0.99, "bn_splits": 8, "proj_batch_norm": False,
    }
    defaults_since = {"proj_batch_norm": False}
    notes = {
        "optimizer": "paper: SGD, momentum 0.9",
        "lr": "paper 0.03 for 200-800 ImageNet epochs; 0.3 as solo-learn's small-data MoCo v2+ (the paper's rate moved the encoder by 9e-3 in 30 steps), cosine decay",
        "weight_decay": "paper: 1e-4",
        "warmup": "paper: no warm-up; cpu-v3 warms up 10 % of the run: with head BatchNorm and none its loss fell, then "
                  "drifted back to uniform (600 steps: pool k-NN 20.4 -> 22.5, rank 10; with it -> 38.6, rank 14)",
        "batch_size": "paper: 256",
        "proj_hidden_dim": "v2: 2-layer MLP head, hidden 2048",
        "proj_output_dim": "v2: 128-d keys",
        "temperature": "v2: τ=0.2",
        "queue_size": "paper 65536 for 1.28M images; 4096 keeps queued keys from recent steps on data sets of "
                      "10^4-10^5 frames, as lightly's small-data MoCo examples use",
        "momentum_base": "v2 uses 0.999; v1's ablation puts 0.99 about a point lower, and the faster key encoder suits short "
                         "runs; rises to 1 on a cosine (BYOL)",
        "bn_splits": "Shuffling BN on one device: 8 groups, as the paper's 8 GPUs (32 images each at batch 256); "
                     "1 turns it off",
        "proj_batch_norm": "v2's head has no BatchNorm; v3's has it after each layer (lightly's MoCoProjectionHead). "
                           "Without it a random encoder's features (non-negative, nearly parallel) give every image "
                           "nearly the same query, and the SGD recipe cannot separate them: on one fixed batch of "
                           "cpu-v3 (queue 0) its loss stays at ln 127; with it the loss falls 43 % in 60 steps",
    }

    def __init__(self, encoder, **hparams):
        super().__init__(encoder, **hparams)
        h = self.hparams
        self.projector = MoCoProjectionHead(encoder.feat_dim, h["proj_hidden_dim"], h["proj_output_dim"],
                                            batch_norm=h["proj_batch_norm"])
        self.key_encoder = copy.deepcopy(encoder)
        self.key_projector = copy.deepcopy(self.projector)
        deactivate_requires_grad(self.key_encoder)
        deactivate_requires_grad(self.key_projector)
        self.criterion = NTXentLoss(temperature=h["temperature"],
                                    memory_bank_size=(h["queue_size"], h["proj_output_dim"]))

    def momentum_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        return [(self.encoder, self.key_encoder), (self.projector, self.key_projector)]

    def _groups(self, n: int) -> int:
        return max(1, min(self.hparams["bn_splits"], n // 2))  # at least 2 images: BatchNorm cannot normalise one

    def queries(self, x: Tensor) -> Tensor:
        """The query of each image, BatchNorm taking its statistics within consecutive groups."""
        return torch.cat([self.projector(self.encoder(g)) for g in x.chunk(self._groups(len(x)))])

    @torch.no_grad()
    def keys(self, x: Tensor) -> Tensor:
        """The key of each image (in the order of `x`), normalised within groups of a random permutation."""
        order = torch.randperm(len(x), device=x.device)
        shuffled = torch.cat([self.key_projector(self.key_encoder(g)) for g in x[order].chunk(self._groups(len(x)))])
        out = torch.empty_like(shuffled)
        out[order] = shuffled
        return out

    def loss(self, views: list[Tensor]) -> Tensor:
        return fp32_loss(self.criterion, self.queries(views[0]), self.keys(views[1]))
