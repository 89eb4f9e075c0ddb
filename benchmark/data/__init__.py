"""Data: sources (simulator, real formats) → frame cache → splits and label fractions."""
