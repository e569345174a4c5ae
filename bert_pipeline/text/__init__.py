"""Text as the model reads it: encoding in batches, vocabulary coverage, the lake's extended vocabulary."""
