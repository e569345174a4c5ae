"""Models: loading Hugging Face folders, pooling, batched inference, long documents in windows, the multi-label problem type."""
