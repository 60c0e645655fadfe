"""QVGGT post-training quantization: quantizers, calibration methods, mixed precision, recipes."""
