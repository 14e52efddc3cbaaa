"""vmbot: create, park and restore Compute Engine VMs from Slack."""
