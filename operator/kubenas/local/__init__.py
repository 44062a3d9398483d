"""Local mode: run a SearchExperiment on this machine, each trial a subprocess."""
