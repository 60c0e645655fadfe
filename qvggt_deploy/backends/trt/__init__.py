"""TensorRT backend: :mod:`.loader` deserialises engines (plugin library first), :mod:`.runner`
runs one engine (:class:`TrtRunner`) or the split aggregator + heads pair (:class:`SplitTrtRunner`)."""
