"""Offline scoring: pandas frames and whole files (locally in chunks, or on Dask) through the data plane's runtime and policy."""
