"""dmmvae: benchmark of multimodal single-cell integration models."""

__version__ = "0.1.0"
