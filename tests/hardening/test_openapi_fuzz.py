"""Schemathesis against the real service's `/openapi.json`: every operation, with the schema's
examples, its boundaries (coverage phase) and random schema-valid and schema-violating requests
(fuzzing phase). Every check runs except `positive_data_acceptance`: the schema cannot say which
bytes are audio or which URLs are reachable, so a schema-valid upload of random bytes is rightly
refused with 415 or 422.

Schemathesis runs through its command line: its pytest integration
(`schemathesis.pytest.from_fixture`) reads a private attribute pytest 9 no longer has.

Every fuzzed URL resolves to 192.0.2.1 (a documentation address, never public), so a fuzzed
`POST /tag/url` is refused without any connection leaving the machine.
"""

from __future__ import annotations

import collections
import json
import re
import subprocess
import sys
from pathlib import Path

from tests.app.servers import ServiceProcess
from tests.hardening.tools import FULL, budget, record

CONFIG = Path(__file__).with_name("schemathesis.toml")


def test_schemathesis_finds_no_server_error_and_no_schema_violation(tmp_path: Path) -> None:
    server = ServiceProcess(
        {}, command=["-m", "tests.hardening.launch", "--resolve-others", "192.0.2.1"]
    )
    har = tmp_path / "requests.har"
    examples = budget(50, 1000)
    try:
        server.wait_ready()
        command = [
            sys.executable,
            *("-m", "schemathesis.cli", "--config-file", str(CONFIG), "run"),
            f"{server.url}/openapi.json",
            *("--max-examples", str(examples), "--request-timeout", "60", "--no-color"),
            *("--report", "har", "--report-har-path", str(har)),
        ]
        if not FULL:
            command += ["--seed", "1"]  # the same cases in every `make test`
        # In a temporary directory: schemathesis keeps a cache in the working directory.
        run = subprocess.run(
            command, cwd=tmp_path, capture_output=True, text=True, timeout=1800, check=False
        )
        alive = server.process.poll() is None
    finally:
        server.stop()

    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-6000:]
    assert alive
    entries = json.loads(har.read_text())["log"]["entries"]
    statuses = collections.Counter(str(entry["response"]["status"]) for entry in entries)
    assert not [status for status in statuses if status.startswith("5")], statuses
    generated = re.search(r"(\d+) generated", output)
    operations = re.search(r"Operations:\s+(\d+) selected", output)
    record(
        "schemathesis",
        max_examples=examples,
        operations=int(operations[1]) if operations else None,
        test_cases=int(generated[1]) if generated else None,
        requests=len(entries),
        answers=dict(sorted(statuses.items())),
    )
