"""The exercise's model in Keras, timed per epoch (run with a python that has TensorFlow; used by bench_training.py).

python keras_epoch.py FASHION_MNIST_DIR N_IMAGES EPOCHS [THREADS]   -> prints {"epoch_seconds": [...]}
"""

import gzip
import json
import sys
import time
from pathlib import Path

import numpy as np
import tensorflow as tf
from tensorflow import keras


def read(path: Path, offset: int) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        return np.frombuffer(f.read(), np.uint8, offset=offset)


def exercise_model() -> keras.Sequential:
    """The exercise's network (Keras' cifar10_cnn layout) on 28x28x1 input, softmax output."""
    return keras.Sequential([
        keras.Input((28, 28, 1)),
        keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
        keras.layers.Conv2D(32, 3, activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Conv2D(64, 3, padding="same", activation="relu"),
        keras.layers.Conv2D(64, 3, activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Flatten(),
        keras.layers.Dense(512, activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ])  # fmt: skip


def main() -> None:
    folder, n, epochs = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    if len(sys.argv) > 4:  # as many threads as PyTorch gets in the same comparison
        tf.config.threading.set_intra_op_parallelism_threads(int(sys.argv[4]))
        tf.config.threading.set_inter_op_parallelism_threads(1)
    images = next(folder.glob("train-images-idx3-ubyte*"))
    labels = next(folder.glob("train-labels-idx1-ubyte*"))
    x = read(images, 16).reshape(-1, 28, 28, 1)[:n].astype("float32") / 255
    y = keras.utils.to_categorical(read(labels, 8)[:n], 10)
    model = exercise_model()
    model.compile(optimizer=keras.optimizers.RMSprop(1e-4), loss="categorical_crossentropy", metrics=["accuracy"])
    times: list[float] = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):  # type: ignore[no-untyped-def]
            self.t = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):  # type: ignore[no-untyped-def]
            times.append(time.perf_counter() - self.t)

    model.fit(x, y, batch_size=32, epochs=epochs, verbose=0, callbacks=[Timer()])
    print(json.dumps({"epoch_seconds": times, "params": model.count_params()}))


if __name__ == "__main__":
    main()
