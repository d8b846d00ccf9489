"""Test helpers for kubegrid: fake cluster, Job controller, S3 and operator process."""
