"""Declare parameters in the checkpoint's storage dtype (bf16/f16) while computing in fp32.

The builder declares fp32 parameters. A bf16 checkpoint keeps its bf16 tensors (half the
bytes, memory-mapped as they are); `irgraph.retype.retype_params` declares them so, a cast
back to the builder's dtype after each lookup of a retyped embedding table.
"""

from __future__ import annotations

from collections.abc import Mapping

from irgraph.dtypes import DType
from irgraph.ir import Graph
from irgraph.retype import retype_params as retype_types


def retype_params(graph: Graph, dtypes: Mapping[str, DType]) -> Graph:
    """A copy of `graph` whose float params named in `dtypes` are declared with those dtypes."""
    return retype_types(
        graph,
        {
            name: v.type.with_dtype(dtypes[name])
            for name, v in graph.params.items()
            if name in dtypes and v.type.dtype.is_float and dtypes[name].is_float
        },
    )
