"""A recording stand-in for the ``tensorrt`` module, for control-flow tests only.

It checks that the builder passes what the profile says to the TensorRT API (the network flag,
memory pools, optimisation level and profile shapes, timing cache in and out); it proves nothing
about TensorRT itself. Names and signatures follow the TensorRT 10.3 Python API.
"""
from __future__ import annotations

import enum
import types


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

    def __init__(self, severity=2):
        self.severity = severity


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

    def get_input(self, i):
        return self._inputs[i]


class OptimizationProfile:
    def __init__(self):
        self.shapes = {}

    def set_shape(self, name, min, opt, max):
        self.shapes[name] = (min, opt, max)


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


class OnnxParser:
    def __init__(self, network, logger):
        self.network = network
        self.num_errors = 0

    def parse_from_file(self, model):
        STATE["parsed"] = model
        return True


class Registry:
    def load_library(self, plugin_path):
        STATE.setdefault("libraries", []).append(plugin_path)
        return object()


def get_plugin_registry():
    return Registry()


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
