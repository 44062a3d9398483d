"""The kopf operator: thin handlers that reconcile SearchExperiments through the core engine.

Never imports torch: strategies run in the experiment's controller pod.
"""
