"""The analysis: segmentation, embeddings, query clustering, gaps and rewrites, as plain functions.

Nothing here imports Postgres, Temporal or the API; the activities call these functions.
"""
