"""Baseline: train the Keras model the way the article does, as one process.

`python bench/article_keras.py [epochs]`: Sequential Dense(1), SGD(0.01), mean squared error,
`model.fit(xs, ys, epochs=500)` (one Python-level epoch at a time), then a prediction at 10.
Standalone on purpose: it uses nothing from this toolkit.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

epochs = int(sys.argv[1]) if len(sys.argv) > 1 else 500
xs = np.array([-1.0, 0.0, 1.0, 2.0, 3.0, 4.0], dtype=np.float32).reshape(-1, 1)
ys = np.array([-3.0, -1.0, 1.0, 3.0, 5.0, 7.0], dtype=np.float32).reshape(-1, 1)
model = keras.Sequential([keras.Input(shape=(1,)), keras.layers.Dense(units=1)])
model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.01), loss="mean_squared_error")
model.fit(xs, ys, epochs=epochs, verbose=0)
print(float(model.predict(np.array([[10.0]], dtype=np.float32), verbose=0)[0, 0]))
