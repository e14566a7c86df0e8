"""Training: data, masks and the CTC training loop."""
