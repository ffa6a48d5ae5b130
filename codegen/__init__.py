"""Code generators: ONNX, TVM, PyTorch (imported as `irgraph.codegen`)."""
