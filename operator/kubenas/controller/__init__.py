"""The experiment controller: a small authenticated HTTP service holding one search strategy."""
