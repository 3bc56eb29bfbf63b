"""A thin HTTP client for the trainq API, used by the CLI; the one home of its error lines."""

from __future__ import annotations

import os
from typing import Any, NoReturn

import click
import requests

URL_ENV, TOKEN_ENV, TIMEOUT_ENV = "TRAINQ_URL", "TRAINQ_TOKEN", "TRAINQ_TIMEOUT"
DEFAULT_URL = "http://127.0.0.1:5000"


class ApiFailure(click.ClickException):
    """The API answered with an error body; a command it escapes from prints it and exits 1."""

    def __init__(self, status: int, error: dict[str, Any], hint: str = ""):
        self.status = status
        self.error = error
        field = f" (field {error['field']})" if error.get("field") else ""
        super().__init__(f"HTTP {status}: {error.get('message', 'error')}{field}{hint}")


class Unreachable(click.ClickException):
    """No answer from the server (refused, unresolvable, timed out): one line, exit 1."""


def _token_hint(status: int, has_token: bool) -> str:
    """What to do about a 401 or 403: which token was sent and how to get one of a wider scope."""
    if status == 401:
        if not has_token:
            return f": the server wants a token and {TOKEN_ENV} is not set"
        return f": the token in {TOKEN_ENV} is not one the server knows"
    return f" (the token in {TOKEN_ENV}; an admin makes a wider one with `trainq token new`)"


class TrainqClient:
    """Calls /api/v1 on one trainq server."""

    def __init__(
        self, url: str | None = None, token: str | None = None, timeout: float | None = None
    ):
        self.url = (url or os.environ.get(URL_ENV, DEFAULT_URL)).rstrip("/")
        self.session = requests.Session()
        token = token or os.environ.get(TOKEN_ENV)
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"
        self.timeout = timeout or float(os.environ.get(TIMEOUT_ENV, "30"))

    def close(self) -> None:
        """Close the underlying connection pool."""
        self.session.close()

    def send(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """One call, any status; a server that cannot be reached or stalls is one line, exit 1."""
        url = path if path.startswith("http") else f"{self.url}{path}"
        try:
            return self.session.request(method, url, timeout=self.timeout, **kwargs)
        except requests.Timeout:
            raise Unreachable(
                f"{self.url} did not answer within {self.timeout:g} s: is it overloaded or"
                f" stuck? (see var/logs/api.log; {TIMEOUT_ENV} sets the wait)"
            ) from None
        except requests.ConnectionError:
            raise Unreachable(
                f"cannot reach {self.url}: is `make run` running? (set {URL_ENV})"
            ) from None

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """One call; raises ApiFailure on an error status."""
        response = self.send(method, path, **kwargs)
        if response.status_code >= 400:
            self.fail(response)
        return response

    def fail(self, response: requests.Response) -> NoReturn:
        """Raise the ApiFailure an error response means, with what to do about it."""
        try:
            error = response.json().get("error", {})
        except (ValueError, AttributeError):
            error = {"message": response.text[:200]}
        hint = ""
        if response.status_code in (401, 403):
            hint = _token_hint(response.status_code, "Authorization" in self.session.headers)
        elif response.status_code >= 500:
            hint = f": {self.url} failed on its side (see its log, var/logs/api.log)"
        raise ApiFailure(response.status_code, error, hint)

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
        """The /health body (also on 503, which says what is down)."""
        response = self.send("GET", "/health")
        if response.status_code >= 400 and response.status_code != 503:
            self.fail(response)
        return response.json()
