"""The pipeline's stages, one module each: ingest, curate, tokenize, train, score, report (each a run_<stage> entry point)."""
