"""What a search learned: decision importance, motifs of the best architectures, architecture graphs.

``importance``, ``motifs`` and ``genotype`` are pure functions of the search space and the trial
history (no I/O), so local mode, the benchmark and the cluster view compute the same figures.
``pictures`` (matplotlib) and ``cluster`` (reads objects with the user's kubeconfig) are adapters.
"""
