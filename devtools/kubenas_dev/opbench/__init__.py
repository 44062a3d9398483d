"""The operator benchmark (``kubenas bench operator``): figures, the run, the command."""
