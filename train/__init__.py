"""Training stage: fit the article's one-neuron model in Keras and in PyTorch.

Run `python -m train.all` (both), `python -m train.keras` or `python -m train.torch`.
"""
