"""``OrtRunner``: a Polygraphy runner over an ONNX Runtime session of an exported VGGT.

The class is built on first access (module ``__getattr__``), so importing this module needs
neither polygraphy nor onnxruntime.
"""
from __future__ import annotations

import time

from qvggt_deploy.backends.base import build_lazily, check_images, invoke_if_callable, ordered_outputs, runner_base
from qvggt_deploy.errors import QvggtError


def _make_class():
    base = runner_base()

    class OrtRunner(base):
        """Runs an exported VGGT with ONNX Runtime.

        Args:
            session: an ``InferenceSession`` or a loader making one (``SessionFromOnnx``).
            name (str, optional): the runner's name in comparisons. Defaults to "ort".
        """

        def __init__(self, session, name=None):
            super().__init__(name=name or "ort", prefix="qvggt-ort")
            self._session = session
            self.height = self.width = None

        def activate_impl(self):
            self.sess = invoke_if_callable(self._session)
            shape = self.sess.get_inputs()[0].shape
            self.height, self.width = (shape[2], shape[3]) if all(isinstance(d, int) for d in shape[2:]) else (None, None)

        def get_input_metadata_impl(self):
            from polygraphy.common import TensorMetadata
            from polygraphy.datatype import DataType

            meta = TensorMetadata()
            for node in self.sess.get_inputs():
                meta.add(node.name, dtype=DataType.from_dtype(node.type, "onnxruntime"), shape=node.shape)
            return meta

        def infer(self, feed_dict, check_inputs=False, *args, **kwargs):
            """Polygraphy's ``infer``; inputs are checked by :func:`check_images` (QvggtError)."""
            return super().infer(feed_dict, False, *args, **kwargs)

        def infer_impl(self, feed_dict):
            images = check_images(feed_dict, self.height, self.width, self.name)
            start = time.perf_counter()
            try:
                outs = self.sess.run(None, {self.sess.get_inputs()[0].name: images})
            except Exception as exc:  # ORT's runtime errors (shape mismatch inside the graph, ...)
                raise QvggtError(f"{self.name}: ONNX Runtime failed: {str(exc).strip()[:300]}") from exc
            self.inference_time = time.perf_counter() - start
            return ordered_outputs({o.name: v for o, v in zip(self.sess.get_outputs(), outs)})

        def deactivate_impl(self):
            del self.sess

    return OrtRunner


def __getattr__(name):
    if name == "OrtRunner":
        return build_lazily(globals(), name, _make_class)
    raise AttributeError(name)
