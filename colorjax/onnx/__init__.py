"""Writing ONNX from JAX: the converter behind `python -m colorjax.export --format=onnx` and the
onnxruntime backend of colorize and serve; the modules here import the `onnx` extra (`runtime`
only once an `OnnxRuntimeColorizer` is built).

Modules: `convert` (`to_onnx`, the entry point: the jaxpr walked equation by equation),
`graph` (the graph being written and its symbolic dimensions), `rules` (one conversion rule per
JAX primitive), `rewrites` (peephole rewrites of the written graph) and `runtime` (a
`Colorizer` whose generator runs in ONNX Runtime).
"""
