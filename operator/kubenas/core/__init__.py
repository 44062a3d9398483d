"""The pure core: search spaces, strategies behind one ask/tell interface, and the experiment engine.

Nothing here performs I/O. Given the spec, the seed and the trial history, every function makes the
same decision, which is what lets any process be killed and rebuilt from history.
"""
