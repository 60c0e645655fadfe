"""Pieces of the VGGT point tracker (CoTracker2 / VGGSfM style), one concept per file:
pixel-centre bilinear sampling, sin/cos embeddings, the correlation pyramid, attention blocks,
the update transformer, and the iterative tracker that ties them together."""
