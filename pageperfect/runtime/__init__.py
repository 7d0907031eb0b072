"""How PagePerfect runs: workers, the Temporal client, the embedded stack, the mirror, the payload codec, metrics."""
