"""A trained network put to use: ``export`` (the verified ONNX file) and ``evaluation`` (batch evaluation with
PyTorch or onnxruntime)."""
