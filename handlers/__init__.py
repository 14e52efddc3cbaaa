"""Slack listeners: each module parses, checks, acknowledges and hands off; none waits on GCP."""
