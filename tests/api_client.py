"""What a script sees of the HTTP API: JSON over real HTTP with a bearer token (shared by the API and CLI tests)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import requests

CI_TOKEN = "ci-token-0123456789abcdef"
DEPLOY_TOKEN = "deploy-token-fedcba9876543210"
API_TOKENS = (("ci", CI_TOKEN), ("deploy-bot", DEPLOY_TOKEN))
WAIT = "60"  # ?wait= for a step that should end: the answer comes as soon as it has


@dataclass
class ApiClient:
    base_url: str
    token: str | None = CI_TOKEN
    session: requests.Session = field(default_factory=requests.Session)

    def call(self, method: str, path: str, *, json: Any = None, token: str | None = "default", **kwargs: Any) -> requests.Response:
        token = self.token if token == "default" else token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        headers.update(kwargs.pop("headers", {}))
        return self.session.request(method, self.base_url + path, json=json, headers=headers, timeout=90, **kwargs)

    def post(self, path: str, json: Any = None, **kwargs: Any) -> requests.Response:
        return self.call("POST", path, json=json, **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.call("GET", path, **kwargs)

    def done(self, path: str, json: Any = None) -> dict[str, Any]:
        """POST a mutation and wait for its end (?wait=); the operation's JSON."""
        response = self.post(path, json, params={"wait": WAIT})
        assert response.status_code == 200, response.text
        return response.json()["operation"]
