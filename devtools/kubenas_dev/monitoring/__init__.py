"""Test helpers for the chart's monitoring: the Prometheus Operator's CRDs, PromQL of the chart, scrape configs."""
