"""Local stand-ins for the external services vmbot talks to (Slack, GCE).

They speak the real wire protocols so production clients work against them
unmodified; tests use them instead of the network.
"""
