"""Lightning's checkpoint I/O with atomic saves and pickle-free loads."""
from __future__ import annotations

from pytorch_lightning.plugins.io import TorchCheckpointIO

from leaderboard.atomic import atomic_path


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes through a temporary file and a rename, so a kill during a save leaves the previous
    last.ckpt intact; loads with `weights_only=True`, so a checkpoint never runs code."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        with atomic_path(path) as tmp:
            super().save_checkpoint(checkpoint, tmp, storage_options)

    def load_checkpoint(self, path, map_location=None, weights_only=None):
        return super().load_checkpoint(path, map_location=map_location or (lambda storage, loc: storage),
                                       weights_only=True)
