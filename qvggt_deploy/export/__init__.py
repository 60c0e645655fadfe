"""ONNX export: the trace-friendly model view, recipe -> QDQ lowering, weights, the driver, lint."""
