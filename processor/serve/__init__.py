"""``axmon serve``: the monitoring API and the web dashboard over the sink's database (read-only)."""
