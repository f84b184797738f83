"""Training with Darknet's semantics: learning-rate policies, SGD update, the training loop."""
