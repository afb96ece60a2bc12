"""Released network weights (ONNX) and their manifest, shipped inside the package."""
