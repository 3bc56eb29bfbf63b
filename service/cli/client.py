"""A thin HTTP client for the trainq API, used by the CLI."""

from __future__ import annotations

import os
from typing import Any

import click
import requests


class ApiFailure(click.ClickException):
    """The API answered with an error body; a command it escapes from prints it and exits 1."""

    def __init__(self, status: int, error: dict[str, Any]):
        self.status = status
        self.error = error
        field = f" (field {error['field']})" if error.get("field") else ""
        super().__init__(f"HTTP {status}: {error.get('message', 'error')}{field}")


class TrainqClient:
    """Calls /api/v1 on one trainq server."""

    def __init__(self, url: str | None = None, token: str | None = None, timeout: float = 30.0):
        self.url = (url or os.environ.get("TRAINQ_URL", "http://127.0.0.1:5000")).rstrip("/")
        self.session = requests.Session()
        token = token or os.environ.get("TRAINQ_TOKEN")
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"
        self.timeout = timeout

    def close(self) -> None:
        """Close the underlying connection pool."""
        self.session.close()

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """One call; raises ApiFailure on an error status."""
        url = path if path.startswith("http") else f"{self.url}{path}"
        response = self.session.request(method, url, timeout=self.timeout, **kwargs)
        if response.status_code >= 400:
            try:
                error = response.json().get("error", {})
            except ValueError:
                error = {"message": response.text[:200]}
            raise ApiFailure(response.status_code, error)
        return response

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        """One /api/v1 call returning the decoded JSON body."""
        return self.request(method, f"/api/v1{path}", **kwargs).json()

    def submit(self, fields: dict[str, Any], idempotency_key: str | None = None) -> dict[str, Any]:
        """Submit one job."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self.api("POST", "/jobs", json=fields, headers=headers)

    def job(self, job_id: int) -> dict[str, Any]:
        """One job."""
        return self.api("GET", f"/jobs/{job_id}")

    def jobs(self, **filters: Any) -> dict[str, Any]:
        """A page of jobs."""
        params = {k: v for k, v in filters.items() if v not in (None, "", [], ())}
        return self.api("GET", "/jobs", params=params)

    def losses(self, job_id: int, **params: Any) -> dict[str, Any]:
        """A job's loss history."""
        return self.api("GET", f"/jobs/{job_id}/losses", params=params)

    def cancel(self, job_id: int) -> dict[str, Any]:
        """Cancel a job."""
        return self.api("POST", f"/jobs/{job_id}/cancel")

    def health(self) -> dict[str, Any]:
        """The /health body (also on 503)."""
        response = self.session.get(f"{self.url}/health", timeout=self.timeout)
        return response.json()
