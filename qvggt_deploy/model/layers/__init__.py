"""Transformer building blocks shared by the DINOv2 patch embed, the aggregator and the heads."""
