"""Model: MXTModel assembled from registered components, numeric modes, and the saved-model folder."""
