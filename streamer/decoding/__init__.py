"""CTC decoders: greedy best path, and KenLM beam search."""
