"""TensorRT deployment: device profiles, memory estimates, the strongly typed engine builder,
the sidecar written next to each engine, and the split (aggregator + heads) mode.

Everything here imports without TensorRT: :mod:`.builder` and :mod:`.cuda` reach ``tensorrt`` and
the CUDA bindings through :mod:`qvggt_deploy.lazy` handles, so profile parsing, memory estimates,
sidecars and split planning run (and are tested) on machines without a GPU.
"""
