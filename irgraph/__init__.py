"""irgraph: a compiler for large-language-model graphs.

import irgraph
g = irgraph.load("tiny-llama/")          # a saved graph folder
print(g)                                  # the text form
logits = irgraph.interpret(g, [[1, 2, 3]])
"""

import irgraph.ops  # noqa: F401  (registers every op in irgraph.registry.OPS on `import irgraph`)
from irgraph.builder import GraphBuilder
from irgraph.dtypes import DType
from irgraph.errors import (
    CodegenError,
    ConfigError,
    DeviceUnavailable,
    InputError,
    IRError,
    IrgraphError,
    PassError,
    RuntimeFailure,
)
from irgraph.interpreter import run
from irgraph.ir import Graph, Node, Value
from irgraph.lm import interpret
from irgraph.parser import parse
from irgraph.serialize import load, save
from irgraph.types import Sym, TensorType, parse_type

__version__ = "0.1.0"

__all__ = [
    "CodegenError",
    "ConfigError",
    "DType",
    "DeviceUnavailable",
    "Graph",
    "GraphBuilder",
    "IRError",
    "InputError",
    "IrgraphError",
    "Node",
    "PassError",
    "RuntimeFailure",
    "Sym",
    "TensorType",
    "Value",
    "interpret",
    "load",
    "parse",
    "parse_type",
    "run",
    "save",
]
