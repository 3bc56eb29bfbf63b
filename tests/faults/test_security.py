"""Security: a pickled message is refused and never executed; no SQL is built from strings."""

from __future__ import annotations

import ast
import pickle
import time
import uuid
from pathlib import Path

from kombu import Connection

from service.broker import TRAIN_TASK
from tests.faults.conftest import FaultEnv

ROOT = Path(__file__).resolve().parents[2]


class _Exploit:
    """Unpickling this creates a file: proof that a pickle was executed."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (open, (str(self.marker), "w"))


def test_pickled_message_on_the_queue_is_refused_not_executed(
    env: FaultEnv, tmp_path: Path
) -> None:
    # Given a worker, and a message in Celery's pickle format published straight to its queue
    worker = env.worker(concurrency=1)
    marker = tmp_path / "pwned"
    payload = pickle.dumps(((_Exploit(marker),), {}, {}), protocol=2)
    task_id = str(uuid.uuid4())
    with Connection(env.redis.url) as connection:
        connection.Producer().publish(
            payload,
            routing_key="cpu",
            content_type="application/x-python-serialize",
            content_encoding="binary",
            headers={"task": TRAIN_TASK, "id": task_id, "lang": "py", "argsrepr": "(1,)"},
        )
    env.fault()
    # When the worker has had the time to receive it
    deadline = time.monotonic() + 30
    while "ContentDisallowed" not in worker.log_tail(200) and time.monotonic() < deadline:
        time.sleep(0.2)
    # Then it was refused, nothing ran, and the worker still works
    assert "ContentDisallowed" in worker.log_tail(200), worker.log_tail(60)
    assert not marker.exists()
    assert worker.process.poll() is None
    job_id = env.submit(iterations=200)
    env.wait(job_id, lambda j: j["status"] == "succeeded", timeout=60)
    assert not marker.exists()
    env.check()


SQL_CALLS = {"text", "exec_driver_sql", "execute", "executescript"}


def _builds_a_string(node: ast.AST) -> bool:
    """An f-string, a % or + expression, or a .format() call: SQL assembled at run time."""
    if isinstance(node, ast.JoinedStr):
        return True
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod | ast.Add):
        return True
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "format"
    )


def test_no_sql_is_built_from_strings() -> None:
    offenders = []
    files = [*ROOT.joinpath("service").rglob("*.py"), *ROOT.joinpath("worker").rglob("*.py")]
    assert len(files) > 20
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in SQL_CALLS and _builds_a_string(node.args[0]):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []


def test_the_sql_check_catches_an_f_string() -> None:
    tree = ast.parse('sa.text(f"SELECT * FROM jobs WHERE id = {job_id}")')
    call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call))
    assert _builds_a_string(call.args[0])
