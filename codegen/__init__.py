"""Code generators: ONNX, TVM, PyTorch, GGUF (imported as `irgraph.codegen`)."""
