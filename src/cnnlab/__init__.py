"""cnnlab: the classic Fashion-MNIST CNN lab on PyTorch Lightning, with ONNX export and InceptionV3 filters."""

__version__ = "0.1.0"
