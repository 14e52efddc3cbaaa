"""What the running bot tells its operators: Prometheus metrics (metrics.py) and readiness checks (readiness.py)."""
