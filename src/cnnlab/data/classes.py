"""Fashion-MNIST's ten classes, in label order (light to import: the CLI prints them before torch is loaded)."""

CLASS_NAMES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
