"""``qvggt bench``: latency, peak memory and size of model variants, each in a fresh process."""
