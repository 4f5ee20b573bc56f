"""Float reference (PyTorch): neuron step functions, the spatial RSNN, the leaky readout."""
