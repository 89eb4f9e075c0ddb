"""The pretraining engine: config → sampler → loader → Lightning module → encoder checkpoint."""
