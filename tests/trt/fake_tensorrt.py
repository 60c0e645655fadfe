"""A recording stand-in for the ``tensorrt`` module, for control-flow tests only.

It checks that the builder passes what the profile says to the TensorRT API (the network flag,
memory pools, optimisation level and profile shapes, timing cache in and out), and that the
runner and ``qvggt bench --backend trt`` drive the runtime API (deserialise, I/O tensors, shapes
and addresses, ``execute_async_v3``, ``IProfiler``, the engine inspector); it proves nothing about
TensorRT itself. Names and signatures follow the TensorRT 10.3 Python API.

A fake engine file is ``ENGINE_MAGIC`` + JSON: ``{"inputs": {name: {"shape", "min", "opt",
"max"}}, "outputs": {name: shape}, "layers": [{"name", "ms", "type"}], "device_memory": bytes,
"detailed": bool}``; ``-1`` in an output shape is the input's first dimension.
"""
from __future__ import annotations

import enum
import json
import time
import types

import numpy as np

ENGINE_MAGIC = b"FAKE-TRT-ENGINE\n"


class NetworkDefinitionCreationFlag(enum.IntEnum):
    EXPLICIT_BATCH = 0
    STRONGLY_TYPED = 1


class MemoryPoolType(enum.IntEnum):
    WORKSPACE = 0
    TACTIC_SHARED_MEMORY = 5


class BuilderFlag(enum.IntEnum):
    FP16 = 0
    INT8 = 1
    VERSION_COMPATIBLE = 13


class Logger:
    WARNING = 2

    def __init__(self, min_severity=2):
        self.min_severity = min_severity


class HostMemory(bytes):
    @property
    def nbytes(self):
        return len(self)


class TimingCache:
    def __init__(self, data: bytes):
        self.data = data + b"+timed"

    def serialize(self):
        return HostMemory(self.data)


class Tensor:
    def __init__(self, name, shape):
        self.name, self.shape = name, shape


class Network:
    def __init__(self, flags, inputs):
        self.flags = flags
        self._inputs = inputs

    @property
    def num_inputs(self):
        return len(self._inputs)

    def get_input(self, index):
        return self._inputs[index]


class OptimizationProfile:
    def __init__(self):
        self.shapes = {}

    def set_shape(self, input, min, opt, max):
        self.shapes[input] = (min, opt, max)


class Config:
    def __init__(self, log):
        self.log = log
        self.pools, self.flags, self.profiles = {}, [], []
        self.builder_optimization_level = 3
        self.max_aux_streams = -1
        self.plugins_to_serialize = []
        self.cache = None

    def set_memory_pool_limit(self, pool, pool_size):
        self.pools[pool] = pool_size

    def set_flag(self, flag):
        self.flags.append(flag)

    def add_optimization_profile(self, profile):
        self.profiles.append(profile)
        return len(self.profiles) - 1

    def create_timing_cache(self, serialized_timing_cache):
        return TimingCache(bytes(serialized_timing_cache))

    def set_timing_cache(self, cache, ignore_mismatch):
        self.cache, self.ignore_mismatch = cache, ignore_mismatch
        return True

    def get_timing_cache(self):
        return self.cache


class Builder:
    def __init__(self, logger):
        self.log = STATE

    def create_network(self, flags=0):
        network = Network(flags, [Tensor("images", (-1, 3, 56, 56))])
        STATE["network"] = network
        return network

    def create_builder_config(self):
        STATE["config"] = Config(STATE)
        return STATE["config"]

    def create_optimization_profile(self):
        return OptimizationProfile()

    def build_serialized_network(self, network, config):
        STATE["built"] = (network, config)
        return HostMemory(b"PLAN")


class ParserError:
    """What ``OnnxParser.get_error`` returns: accessors are methods, as in the bindings."""

    def __init__(self, desc, node=-1, node_name="", node_operator=""):
        self._desc, self._node, self._node_name, self._node_operator = desc, node, node_name, node_operator

    def desc(self):
        return self._desc

    def node(self):
        return self._node

    def node_name(self):
        return self._node_name

    def node_operator(self):
        return self._node_operator


class OnnxParser:
    """Parses whatever it is given; fails with the ``ParserError`` list in ``STATE["parse_errors"]``."""

    def __init__(self, network, logger):
        self.network = network
        self._errors = []

    @property
    def num_errors(self):
        return len(self._errors)

    def get_error(self, index):
        return self._errors[index]

    def parse_from_file(self, model):
        STATE["parsed"] = model
        self._errors = list(STATE.get("parse_errors", []))
        return not self._errors


class Registry:
    def load_library(self, plugin_path):
        STATE.setdefault("libraries", []).append(plugin_path)
        return object()


def get_plugin_registry():
    return Registry()


# ---- runtime ------------------------------------------------------------------------------------
class TensorIOMode(enum.IntEnum):
    NONE = 0
    INPUT = 1
    OUTPUT = 2


class DataType(enum.IntEnum):
    FLOAT = 0
    HALF = 1


def nptype(trt_type):
    return {DataType.FLOAT: np.float32, DataType.HALF: np.float16}[trt_type]


class ExecutionContextAllocationStrategy(enum.IntEnum):
    STATIC = 0
    ON_PROFILE_CHANGE = 1
    USER_MANAGED = 2


class LayerInformationFormat(enum.IntEnum):
    ONELINE = 0
    JSON = 1


class IProfiler:
    def __init__(self):
        pass

    def report_layer_time(self, layer_name, ms):
        raise NotImplementedError


class Runtime:
    def __init__(self, logger):
        self.logger = logger

    def deserialize_cuda_engine(self, serialized_engine):
        data = bytes(serialized_engine)
        if not data.startswith(ENGINE_MAGIC):
            return None
        return ICudaEngine(json.loads(data[len(ENGINE_MAGIC):]))


class ICudaEngine:
    def __init__(self, spec):
        self.spec = spec
        self._names = list(spec["inputs"]) + list(spec["outputs"])

    @property
    def num_io_tensors(self):
        return len(self._names)

    @property
    def num_layers(self):
        return len(self.spec["layers"])

    @property
    def device_memory_size_v2(self):
        return int(self.spec.get("device_memory", 0))

    def get_tensor_name(self, index):
        return self._names[index]

    def get_tensor_mode(self, name):
        return TensorIOMode.INPUT if name in self.spec["inputs"] else TensorIOMode.OUTPUT

    def get_tensor_dtype(self, name):
        return DataType.FLOAT

    def get_tensor_shape(self, name):
        if name in self.spec["inputs"]:
            return tuple(self.spec["inputs"][name]["shape"])
        return tuple(self.spec["outputs"][name])

    def get_tensor_profile_shape(self, name, profile_index):
        t = self.spec["inputs"][name]
        return tuple(t["min"]), tuple(t["opt"]), tuple(t["max"])

    def create_execution_context(self, strategy=ExecutionContextAllocationStrategy.STATIC):
        STATE.setdefault("contexts", []).append(int(strategy))
        return IExecutionContext(self)

    def create_engine_inspector(self):
        return EngineInspector(self)


class IExecutionContext:
    def __init__(self, engine):
        self.engine = engine
        self.shapes, self.addresses = {}, {}
        self.profiler = None
        self.enqueue_emits_profile = True

    def set_input_shape(self, name, shape):
        t = self.engine.spec["inputs"][name]
        ok = len(shape) == len(t["min"]) and all(a <= d <= b for a, d, b in zip(t["min"], shape, t["max"]))
        if ok:
            self.shapes[name] = tuple(shape)
        return ok

    def get_tensor_shape(self, name):
        if name in self.shapes:
            return self.shapes[name]
        frames = next(iter(self.shapes.values()))[0]
        return tuple(frames if d == -1 else d for d in self.engine.spec["outputs"][name])

    def set_tensor_address(self, name, memory):
        self.addresses[name] = int(memory)
        return True

    def set_device_memory(self, memory, size):
        self.device_memory = (int(memory), int(size))

    def execute_async_v3(self, stream_handle):
        missing = [n for n in self.engine._names if n not in self.addresses]
        if missing:
            raise RuntimeError(f"no address for {missing}")
        layers = self.engine.spec["layers"]
        time.sleep(sum(layer["ms"] for layer in layers) / 1e3)
        STATE["executions"] = STATE.get("executions", 0) + 1
        if self.profiler is not None and self.enqueue_emits_profile:
            for layer in layers:
                self.profiler.report_layer_time(layer["name"], float(layer["ms"]))
        return True


class EngineInspector:
    def __init__(self, engine):
        self.engine = engine
        self.execution_context = None

    def get_layer_information(self, layer_index, format):
        layer = self.engine.spec["layers"][layer_index]
        if not self.engine.spec.get("detailed"):  # ProfilingVerbosity.LAYER_NAMES_ONLY
            return json.dumps(layer["name"])
        return json.dumps({"Name": layer["name"], "LayerType": layer.get("type", "CaskGemm")})

    def get_engine_information(self, format):
        return json.dumps({"Layers": [self.get_layer_information(i, format) for i in range(self.engine.num_layers)]})


def engine_bytes(spec) -> bytes:
    """A fake engine file holding ``spec``."""
    return ENGINE_MAGIC + json.dumps(spec).encode()


STATE: dict = {}
__version__ = "10.3.0"


def make_module() -> types.ModuleType:
    STATE.clear()
    module = types.ModuleType("tensorrt")
    for name, value in dict(globals()).items():
        if not name.startswith("_") or name == "__version__":
            setattr(module, name, value)
    module.STATE = STATE
    return module
