"""Barlow Twins (Zbontar et al., ICML 2021): cross-correlation of the two views' embeddings → identity."""
from __future__ import annotations

from lightly.loss import BarlowTwinsLoss
from lightly.models.modules.heads import BarlowTwinsProjectionHead
from torch import Tensor

from methods.base import SSLMethod, fp32_loss
from methods.registry import register_method

# A projector wider than this many dimensions per sample of the global batch gets a warning before pretraining:
# the paper's is 4 per sample (8,192 at 2,048), solo-learn's 8 (2,048 at 256); the cpu-v3 collapse was at 32.
WIDTH_PER_SAMPLE = 8


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
        "trust_coefficient": "paper's LARS η 1e-3; with LARC clipping a layer moves by at most 0.1 % of its norm per step, near the paper's own 0.16 % (lr 1.6 × η at batch 2048). solo-learn's 0.02 (2 %) could not lower the loss on one fixed batch (244 → 396 in 60 steps; 0.002: → 33; Adam: → 28) and on the cpu track moved the weights by 2.3× their norm and collapsed the features (effective rank 2.7 and 1.6, pool k-NN +0.1, seeds 0 and 1), at batch 64 and at 256 alike (rank 1.6); 0.002: rank 9, 0.0005: pool k-NN −3.1; 1e-3: rank 171 / 122 / 193 and pool k-NN +8.3 / +3.3 / +4.9 (seeds 0 / 1 / 2; cpu preset, 150 steps). With a 2048-d projector at batch 64 it only delays the collapse (rank 15 / 4.6 / 3.1 at 300 / 600 / 1200 steps); a projector of 4 × the batch keeps the features (see proj_output_dim; README, Barlow Twins' collapse)",
        "weight_decay": "paper 1.5e-6; 1e-4 as solo-learn: with LARC steps of up to 2 % a smaller decay let the weights grow 4× in 150 steps and the features fall to an effective rank of 2.6 (smoke, measured before the trust coefficient was lowered)",
        "warmup": "paper: 10 warm-up epochs of 1000; a tenth of a short run keeps LARS stable at the start",
        "batch_size": "paper 2048; Fig. 2: Barlow Twins holds up at 256, which fits one GPU",
        "bias_lr_scale": "paper: biases and BN at lr 0.0048 = 0.024 × the weights' 0.2",
        "proj_hidden_dim": "paper 8192; 2048 as in lightly's single-GPU ResNet-18 examples, in proportion to US-scale data; with the output, set it to about 4 × the global batch at small batches (proj_output_dim)",
        "proj_output_dim": "paper 8192 at batch 2048 (4 × the batch; Fig. 4: accuracy grows slowly past 2048), solo-learn 2048 at 256; 2048 for a GPU batch. At a CPU batch of 64 the batch's cross-correlation has rank ≤ 63 and a 2048-d projector let the features collapse with more steps (cpu-v3, η 1e-3: rank 3.1 and pool k-NN 20.4 → 23.9 after 1200 steps; at batch 256 with the same views: rank 12.6, k-NN → 24.3); 256-d (4 × 64) kept them and learned the planes (rank 14.5 / 15.1 and pool k-NN → 39.3 / 42.8 at 600 / 1200 steps; probe at 10 % labels 60.5 / 60.6 against 29.8 / 23.0; at 1200 steps with pretraining seeds 1 and 2: rank 16.9 / 15.7, pool k-NN 15.9 → 62.5 / 15.1 → 53.2): the cpu-v3 and real presets set 256, and pretraining warns when the projector is wider than 8 × the global batch",
        "lambda_offdiag": "paper: λ=5e-3 off-diagonal weight",
        "scale_loss": "solo-learn's 0.1: unscaled (~2,000 at 2048-d) the loss gave the biases and norms, which LARS does not adapt, steps that collapsed the features at batch 64 (smoke, 60 steps, measured: pool k-NN macro-F1 0.131 → 0.129 unscaled and at lr 0.1/0.03/0.005 or a 512-d output ≤ 0.151; 0.218 at 0.1)",
    }

    def __init__(self, encoder, **hparams):
        super().__init__(encoder, **hparams)
        h = self.hparams
        self.projector = BarlowTwinsProjectionHead(encoder.feat_dim, h["proj_hidden_dim"], h["proj_output_dim"])
        self.criterion = BarlowTwinsLoss(lambda_param=h["lambda_offdiag"])

    def setting_warnings(self, global_batch: int) -> list[str]:
        width = max(self.hparams["proj_hidden_dim"], self.hparams["proj_output_dim"])
        if width <= WIDTH_PER_SAMPLE * global_batch:
            return []
        return [f"a {width}-d projector at a global batch of {global_batch}: the batch's cross-correlation matrix has "
                f"rank at most {global_batch - 1}, so the loss cannot decorrelate {width} dimensions, and at batch 64 "
                "a 2,048-d projector let the features collapse with more steps (cpu-v3: effective rank 3.1 after "
                "1,200 steps, 15.1 with 256-d; README, \"Barlow Twins' collapse\"); the paper's projector is 4 × its "
                f"batch: --set proj_hidden_dim={4 * global_batch} --set proj_output_dim={4 * global_batch}"]

    def parameter_groups(self) -> list[dict]:
        groups = super().parameter_groups()
        for g in groups:
            if g["name"] == "bias_norm":
                g["lr_scale"] = self.hparams["bias_lr_scale"]
        return groups

    def loss(self, views: list[Tensor]) -> Tensor:
        z0, z1 = (self.projector(self.encoder(v)) for v in views)
        return self.hparams["scale_loss"] * fp32_loss(self.criterion, z0, z1)
