"""The lake: storage (the fsspec seam), manifests (layout, commits, fingerprints), the predictions schema, migration."""
