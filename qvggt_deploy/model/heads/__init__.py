"""Prediction heads: camera (pose encoding), DPT dense heads (depth, point map), track head."""
