"""Run the long hardening tests and write docs/reliability.md from what they measured.

    .venv/bin/python scripts/hardening/report.py              # what `make hardening` runs
    .venv/bin/python scripts/hardening/report.py --out reliability-draft.md

The tests (tests/hardening/) run with HARDENING_FULL=1: the long budgets (600 fuzzed uploads,
1,000 schemathesis examples per operation, two 30 s overloads) and the tests that only run
here. Each test appends its figures to a JSON-lines file; this script turns them into the
report, with the date, the machine and its load. The report is written even when a test
fails (the failure is in it); the exit status is pytest's.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import textwrap
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
from scripts.bench.common import cpu_model  # noqa: E402

DECODER_FAULTS = ("segfault", "hang", "memory")
LONG_AUDIO = ("two_hours", "four_half_hours", "short_clips_beside")
MB = 1e6


def gpu() -> str:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"


def load_average() -> str:
    try:
        return ", ".join(f"{value:.1f}" for value in os.getloadavg())
    except OSError:
        return "unknown"


def run_tests(results: Path, junit: Path, pytest_args: list[str]) -> int:
    env = {**os.environ, "HARDENING_FULL": "1", "HARDENING_RESULTS": str(results)}
    command = [
        sys.executable,
        *("-m", "pytest", "tests/hardening", "-q", "-p", "no:cacheprovider"),
        f"--junitxml={junit}",
        *pytest_args,
    ]
    print("+", " ".join(command), file=sys.stderr, flush=True)
    return subprocess.run(command, cwd=ROOT, env=env, check=False).returncode


def test_outcomes(junit: Path) -> dict[str, str]:
    """Test name -> passed / failed / skipped, from pytest's JUnit XML."""
    outcomes: dict[str, str] = {}
    if not junit.exists():
        return outcomes
    for case in ET.parse(junit).getroot().iter("testcase"):
        name = f"{case.get('classname', '').rsplit('.', 1)[-1]}::{case.get('name')}"
        if case.find("failure") is not None or case.find("error") is not None:
            outcomes[name] = "failed"
        elif case.find("skipped") is not None:
            outcomes[name] = "skipped"
        else:
            outcomes[name] = "passed"
    return outcomes


def load_figures(results: Path) -> dict[str, list[dict[str, Any]]]:
    figures: dict[str, list[dict[str, Any]]] = {}
    if results.exists():
        for line in results.read_text().splitlines():
            record = json.loads(line)
            figures.setdefault(record.pop("test"), []).append(record)
    return figures


def one(figures: dict[str, list[dict[str, Any]]], name: str) -> dict[str, Any]:
    items = figures.get(name) or [{}]
    return items[-1]


def answers(counts: dict[str, int]) -> str:
    return ", ".join(f"{count} × {status}" for status, count in counts.items()) or "none"


def seconds(value: Any) -> str:
    return "n/a" if value is None else f"{float(value):.2f} s"


def megabytes(value: Any) -> str:
    return "n/a" if value is None else f"{value / MB:.0f} MB"


def render(
    figures: dict[str, list[dict[str, Any]]],
    outcomes: dict[str, str],
    *,
    started: dt.datetime,
    minutes: float,
    load_before: str,
    load_after: str,
) -> str:
    uploads = one(figures, "uploads")
    corpus = figures.get("corpus", [])
    schema = one(figures, "schemathesis")
    urls, redirects = one(figures, "ssrf_urls"), one(figures, "ssrf_redirects")
    overload, default = one(figures, "overload"), one(figures, "overload_default")
    model = one(figures, "model_fault")
    decoder = {fault: one(figures, f"decoder_{fault}") for fault in DECODER_FAULTS}
    long_audio = {name: one(figures, f"long_{name}") for name in LONG_AUDIO}
    isolation = one(figures, "decode_isolation")
    sigterm, stragglers = one(figures, "sigterm"), one(figures, "sigterm_stragglers")
    limit = one(figures, "rate_limit")
    first_start = one(figures, "first_start_under_load")
    sigterm_auto = one(figures, "sigterm_compile_auto")
    default_auto = one(figures, "overload_default_compile_auto")
    stuck, watchdog = one(figures, "liveness_stuck_batch"), one(figures, "liveness_watchdog")
    failed = sorted(name for name, outcome in outcomes.items() if outcome == "failed")
    fuzz_failed = any(name.startswith("test_openapi_fuzz::") for name in failed)
    passed = sum(outcome == "passed" for outcome in outcomes.values())

    lines = [
        "# Reliability",
        "",
        "What bad input, SSRF attempts, overload, faults and shutdown cost the tagging service,",
        "measured against the real service (`tagger serve`'s app and uvicorn runner, in its own",
        "process on 127.0.0.1) by the tests in `tests/hardening/`. This file is generated by",
        "`make hardening` (`scripts/hardening/report.py`); do not edit it by hand.",
        "",
        f"- **Run:** {started:%Y-%m-%d %H:%M} UTC, {minutes:.1f} minutes; "
        f"{passed} tests passed, {len(failed)} failed"
        + (f" ({', '.join(failed)})" if failed else "")
        + ".",
        f"- **Machine:** {os.cpu_count()}-core {cpu_model()}, {gpu()}, Python "
        f"{platform.python_version()}, {platform.system()} {platform.release()}.",
        "- **Shared machine:** other jobs ran at the same time (a training run keeps one core "
        f"busy); load average {load_before} before and {load_after} after the run. Latencies "
        "and capacity are lower than on a quiet machine; what does not depend on speed (every "
        "request answered, zero 5xx, zero connections) does not change.",
        "- **Model:** the bundled default checkpoint (q2l-small), one torch thread; eager "
        "execution (`TAGGER_COMPILE=off`) unless a row says `compile=auto` (the default: "
        "compiled graphs built by a child process, here from an empty compile cache).",
        "",
        "## Summary",
        "",
        "| test | held or tried | result |",
        "|---|---|---|",
        f"| hostile uploads | {uploads.get('corpus_files', 'n/a')} corpus files + "
        f"{uploads.get('fuzz_examples', 'n/a')} hypothesis-fuzzed uploads | "
        f"{answers(uploads.get('answers', {}))}; zero 5xx; peak RSS "
        f"{megabytes(uploads.get('peak_rss_bytes'))} (bound "
        f"{megabytes(uploads.get('bound_bytes'))}) |",
        f"| OpenAPI fuzzing | schemathesis, {schema.get('operations', 'n/a')} operations, "
        f"{schema.get('test_cases', 'n/a')} test cases | "
        + (
            "**FAILED this run** (see the test output) |"
            if fuzz_failed
            else f"{answers(schema.get('answers', {}))}; zero server errors and schema violations |"
        ),
        f"| SSRF | {urls.get('refused', 'n/a')} URLs + {redirects.get('refused', 'n/a')} "
        f"redirects | all 400 problem bodies; {urls.get('connections', 'n/a')} + "
        f"{redirects.get('connections', 'n/a')} connections to the loopback listeners |",
        f"| overload | {overload.get('offered_rps', 'n/a')} req/s for "
        f"{seconds(overload.get('seconds'))} (10 × capacity) | accepted p99 "
        f"{seconds(overload.get('accepted_p99_s'))}; {overload.get('unanswered', 'n/a')} "
        f"unanswered; drained and ready in {seconds(overload.get('drained_s'))}; peak RSS "
        f"{megabytes(overload.get('peak_rss_bytes'))} |",
        f"| model fault | {model.get('poisoned_requests', 'n/a')} failing batches among "
        f"{model.get('normal_requests', 'n/a')} concurrent requests | "
        f"{model.get('failed_batches', 'n/a')} batches failed, "
        f"{model.get('normal_failed_with_their_batch', 'n/a')} requests sharing them answered "
        f"500, {model.get('normal_ok', 'n/a')} others 200 |",
        *(
            f"| decode worker {fault} | {figures_.get('faulted_requests', 'n/a')} faulting "
            f"uploads among {figures_.get('normal_requests', 'n/a')} concurrent requests | each "
            f"422 `decoder-failed` within {seconds(figures_.get('faulted_seconds_max'))}, all "
            f"{figures_.get('normal_ok', 'n/a')} others 200, ready "
            f"{figures_.get('readiness_ok', 'n/a')}/{figures_.get('readiness_checks', 'n/a')} "
            "checks |"
            for fault, figures_ in decoder.items()
        ),
        f"| two-hour upload | {long_audio['two_hours'].get('audio_seconds', 'n/a')} s of real "
        f"music, {long_audio['two_hours'].get('upload_mb', 'n/a')} MB mp3 | 200 in "
        f"{seconds(long_audio['two_hours'].get('seconds'))}; peak RSS grew "
        f"{long_audio['two_hours'].get('peak_rss_growth_mb', 'n/a')} MB |",
        f"| four 30-minute uploads at once | idle server | all 200 in "
        f"{seconds(long_audio['four_half_hours'].get('seconds'))} |",
        f"| SIGTERM under load | {sigterm.get('requests', 'n/a')} requests, "
        f"{sigterm.get('in_flight_at_sigterm', 'n/a')} in flight | unready after "
        f"{seconds(sigterm.get('unready_after_s'))}, {sigterm.get('unanswered', 'n/a')} "
        f"unanswered, exit status {sigterm.get('exit_code', 'n/a')} |",
        f"| SIGTERM under load, `compile=auto` | {sigterm_auto.get('requests', 'n/a')} "
        f"requests while the first start's build runs | "
        f"{sigterm_auto.get('unanswered', 'n/a')} unanswered, exit status "
        f"{sigterm_auto.get('exit_code', 'n/a')} |",
        f"| overload at the default bound, `compile=auto` | "
        f"{default_auto.get('offered_rps', 'n/a')} req/s for "
        f"{seconds(default_auto.get('seconds'))} during the first start's build | accepted "
        f"p99 {seconds(default_auto.get('accepted_p99_s'))}; "
        f"{default_auto.get('unanswered', 'n/a')} unanswered; drained in "
        f"{seconds(default_auto.get('drained_s'))} |",
        f"| first start under load (defaults) | {first_start.get('clients', 'n/a')} clients "
        f"sending {seconds(first_start.get('track_seconds'))} real tracks from readiness | "
        f"ready after {seconds(first_start.get('ready_s'))}, compiled "
        f"({first_start.get('precision', 'n/a')}) after "
        f"{seconds(first_start.get('compiled_s'))}; {first_start.get('ok', 'n/a')} of "
        f"{first_start.get('answered', 'n/a')} answered 200, "
        f"{first_start.get('failures', 'n/a')} failures |",
        f"| stuck batch (liveness) | a model call that never returns | `/healthz` 503 after "
        f"{seconds(stuck.get('healthz_503_after_s'))}; SIGTERM exit (status 70) after "
        f"{seconds(stuck.get('sigterm_exit_after_s'))}; the watchdog ends the process after "
        f"{seconds(watchdog.get('watchdog_exit_after_s'))} |",
        f"| rate limit | {limit.get('limit', 'n/a')} per client | answers "
        f"{limit.get('answers', 'n/a')}, Retry-After {limit.get('retry_after_s', 'n/a')} s |",
        "",
    ]
    lines += _uploads_section(uploads, corpus)
    lines += _schemathesis_section(schema, failed=fuzz_failed)
    lines += _ssrf_section(urls, redirects)
    lines += _overload_section(overload, default)
    lines += _faults_section(model, decoder, sigterm, stragglers, limit)
    lines += _long_audio_section(long_audio)
    lines += _isolation_section(isolation)
    lines += _bugs_section()
    return "\n".join(_wrap(line) for line in lines) + "\n"


def _wrap(line: str) -> str:
    """Paragraphs and list items at 100 columns, like the other docs; tables and headings as
    they are."""
    if len(line) <= 100 or line.startswith(("|", "#")):
        return line
    indent = "  " if line.startswith("- ") else ""
    return textwrap.fill(
        line,
        width=100,
        subsequent_indent=indent,
        break_long_words=False,
        break_on_hyphens=False,
    )


def _uploads_section(uploads: dict[str, Any], corpus: list[dict[str, Any]]) -> list[str]:
    lines = [
        "## Hostile uploads",
        "",
        "`tests/hardening/test_uploads.py` against a server with production limits (200 MB "
        "uploads, 2 hours of audio, two decode worker processes). The corpus is made by "
        "`tests/hardening/corpus.py` (`python -m tests.hardening.corpus --out DIR` writes the "
        "files); each file names the answers that are correct for it, and the test fails on any "
        "other. Then hypothesis mutates valid files of every format (bit flips, overwrites, "
        "cuts, inserts, repeats), prefixes random bytes with audio magic numbers and sends "
        f"random bytes, with random query parameters: {uploads.get('fuzz_examples', 'n/a')} "
        "uploads, each answered 200 with finite scores in [0, 1] or with a 4xx problem body. "
        "Uploads that smuggle HLS playlists and ffconcat scripts naming local files and URLs "
        "are refused without any fetch.",
        "",
        f"Peak resident memory of the server process (the kernel's high-water mark, VmHWM): "
        f"**{megabytes(uploads.get('peak_rss_bytes'))}**, bound "
        f"{megabytes(uploads.get('bound_bytes'))}.",
        "",
        "| file | what it is | bytes | answer | seconds |",
        "|---|---|---|---|---|",
    ]
    for item in corpus:
        answer = str(item["status"]) + (f" `{item['problem']}`" if item.get("problem") else "")
        lines.append(
            f"| `{item['name']}` | {item['description']} | {item['bytes']:,} | {answer} | "
            f"{item['seconds']:.2f} |"
        )
    return [*lines, ""]


def _schemathesis_section(schema: dict[str, Any], *, failed: bool = False) -> list[str]:
    if failed:
        return [
            "## OpenAPI fuzzing",
            "",
            "`tests/hardening/test_openapi_fuzz.py` (schemathesis against `/openapi.json` of the "
            "real server) **failed in this run**; its figures are missing. The failure and the "
            "requests that caused it are in the test output (schemathesis writes a HAR file).",
            "",
        ]
    return [
        "## OpenAPI fuzzing",
        "",
        "`tests/hardening/test_openapi_fuzz.py` runs schemathesis (command line, config in "
        "`tests/hardening/schemathesis.toml`) against `/openapi.json` of the real server: the "
        "schema's examples, its boundaries and random valid and invalid requests for every "
        f"operation, {schema.get('max_examples', 'n/a')} examples per operation and phase, all "
        "checks but `positive_data_acceptance` (the schema cannot say which bytes are audio). "
        f"{schema.get('test_cases', 'n/a')} test cases, {schema.get('requests', 'n/a')} "
        f"requests: {answers(schema.get('answers', {}))}. No 5xx, and every answer matched its "
        "documented status, content type, headers and body schema.",
        "",
    ]


def _ssrf_section(urls: dict[str, Any], redirects: dict[str, Any]) -> list[str]:
    return [
        "## SSRF",
        "",
        "`tests/hardening/test_ssrf.py` posts to `POST /tag/url` of a server with the default "
        "address policy (any port allowed, so the address rule alone decides). Tried: loopback "
        "in every spelling (127.0.0.1, 127.1, 127.0.1, 2130706433, 0x7f000001, 0x7f.0.0.1, "
        "017700000001, localhost in any case, 0.0.0.0, 0, ideographic full stops, [::1], "
        "[::], [::ffff:127.0.0.1], [::ffff:7f00:1], IPv4-compatible, NAT64 and 6to4 forms); "
        "private, link-local, carrier-grade NAT, benchmarking, multicast and broadcast "
        "addresses; the cloud metadata address over IPv4 and IPv6; names a test resolver "
        "points at loopback, metadata, private and mixed public+private addresses; file, ftp, "
        "gopher, data, dict, ldap, ws, javascript and jar URLs; credentials, also hidden with "
        "backslashes and encoded slashes; malformed hosts (leading zeros, fullwidth digits, "
        "zone ids, percent-encoding, CRLF) and URLs over 2,048 characters. "
        f"**{urls.get('refused', 'n/a')} URLs, each answered 400** (`forbidden-url` or "
        "`bad-request`). A web server on 127.0.0.2, which the policy treats as public, "
        "redirected to loopback, decimal loopback, [::1], a name for loopback, the metadata "
        f"address, file:, gopher:, a URL with credentials and to itself first: "
        f"**{redirects.get('refused', 'n/a')} redirects, each answered 400**, while the same "
        "site's audio file was fetched and tagged (the positive control). A listener on "
        "127.0.0.1 and ::1 at the port of every loopback URL counted "
        f"**{urls.get('connections', 'n/a')} + {redirects.get('connections', 'n/a')} "
        "connections** (and counted the two made to check it works).",
        "",
    ]


def _overload_section(overload: dict[str, Any], default: dict[str, Any]) -> list[str]:
    def row(label: str, data: dict[str, Any]) -> str:
        return (
            f"| {label} | {data.get('max_inflight_requests', 'n/a')} | "
            f"{data.get('capacity_rps', 'n/a')} | {data.get('offered_rps', 'n/a')} | "
            f"{data.get('requests', 'n/a')} | {answers(data.get('answers', {}))} | "
            f"{data.get('accepted_rps', 'n/a')} | {seconds(data.get('accepted_p50_s'))} | "
            f"{seconds(data.get('accepted_p99_s'))} | {seconds(data.get('refused_p99_s'))} | "
            f"{data.get('unanswered', 'n/a')} | {seconds(data.get('drained_s'))} | "
            f"{megabytes(data.get('peak_rss_bytes'))} |"
        )

    return [
        "## Overload",
        "",
        "`tests/hardening/test_load.py`: 30 s mp3 clips (9 windows each) sent open loop (at a "
        "fixed rate, whatever the answers) at ten times the capacity measured just before "
        "(requests/s completed by four back-to-back clients), for 30 s. Admission is bounded "
        "by `TAGGER_MAX_INFLIGHT_REQUESTS`; for the latency target the test sizes it by "
        "Little's law, capacity x 1 s of queueing. The second row keeps the default of 32, "
        "meant for batching on a GPU: every request is still answered and the refusals are "
        "still immediate, but an accepted request waits behind up to 31 others on this CPU, "
        "and the backlog takes that long to drain; no target applies to it. "
        f"Targets (first row): accepted p99 under 2 s: "
        f"**{seconds(overload.get('accepted_p99_s'))}**; rejected ones 503 with Retry-After; "
        f"no request unanswered: **{overload.get('unanswered', 'n/a')}**; drained and ready "
        f"within 5 s of the load stopping: **{seconds(overload.get('drained_s'))}**.",
        "",
        "| bound | in progress | capacity req/s | offered req/s | requests | answers "
        "| accepted req/s | accepted p50 | accepted p99 | 503 p99 | unanswered | drained "
        "| peak RSS |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        row("sized for 2 s", overload),
        row("default", default),
        "",
    ]


def _faults_section(
    model: dict[str, Any],
    decoder: dict[str, dict[str, Any]],
    sigterm: dict[str, Any],
    stragglers: dict[str, Any],
    limit: dict[str, Any],
) -> list[str]:
    return [
        "## Faults and shutdown",
        "",
        "`tests/hardening/test_faults.py` runs the service through `tests/hardening/launch.py`, "
        "which injects faults with the hooks `create_app` has for tests, while four clients "
        "keep sending one-window clips:",
        "",
        f"- **Model exception:** the model call raises for any batch holding a window of "
        f"silence; {model.get('poisoned_requests', 'n/a')} silent uploads, spaced out, failed "
        f"{model.get('failed_batches', 'n/a')} batches. Each silent upload got 500 "
        f"`inference-failed`; of {model.get('normal_requests', 'n/a')} normal requests, "
        f"{model.get('normal_failed_with_their_batch', 'n/a')} shared a failing batch and got "
        f"500 with it (at most 7 per batch), {model.get('normal_ok', 'n/a')} got 200, and the "
        "batcher kept serving.",
        "- **Decode workers** (`TAGGER_DECODE_FAULT_INJECTION=true`, two worker processes, "
        "3 s decode timeout, a `/readyz` probe every 50 ms): uploads carrying a marker make "
        "their worker kill itself with SIGSEGV, sleep for ever, or allocate until its "
        "address-space limit stops it. "
        + " ".join(
            f"{fault.capitalize()}: {f.get('faulted_requests', 'n/a')} uploads, each 422 "
            f"`decoder-failed` within {seconds(f.get('faulted_seconds_max'))}, its worker "
            f"replaced; {f.get('normal_ok', 'n/a')} of {f.get('normal_requests', 'n/a')} "
            f"concurrent normal requests 200; ready in {f.get('readiness_ok', 'n/a')} of "
            f"{f.get('readiness_checks', 'n/a')} checks."
            for fault, f in decoder.items()
        ),
        f"- **SIGTERM under load** (`tests/hardening/test_shutdown.py`): six clients busy, a "
        f"probe on `/readyz` every 50 ms acting as the load balancer. `/readyz` answered 503 "
        f'"shutting down" {seconds(sigterm.get("unready_after_s"))} after the signal, '
        f"while the listener stayed open for the {sigterm.get('drain_s', 'n/a')} s drain; the "
        f"{sigterm.get('in_flight_at_sigterm', 'n/a')} requests in flight finished with 200; "
        f"{sigterm.get('unanswered', 'n/a')} of {sigterm.get('requests', 'n/a')} requests went "
        f"unanswered; exit status {sigterm.get('exit_code', 'n/a')}.",
        f"- **SIGTERM with a long queue:** 8 requests of 24 windows, one window per batch, "
        f"1 s shutdown timeout: the queued ones were answered {stragglers.get('statuses', 'n/a')} "
        '(503 `not-ready` "shutting down" with Retry-After) and the process exited with '
        f"status {stragglers.get('exit_code', 'n/a')} after "
        f"{seconds(stragglers.get('exit_after_s'))}.",
        f"- **Rate limit** (`tests/hardening/test_rate_limit.py`, `TAGGER_RATE_LIMIT="
        f"{limit.get('limit', 'n/a')}`): one client's answers {limit.get('answers', 'n/a')}, "
        f"Retry-After {limit.get('retry_after_s', 'n/a')} s; other clients, the other "
        "endpoint, probes, metrics and the describing endpoints unaffected.",
        "",
    ]


def _long_audio_section(long_audio: dict[str, dict[str, Any]]) -> list[str]:
    two, four, beside = (long_audio[name] for name in LONG_AUDIO)
    ratio = beside.get("ratio_p50")
    verdict = "n/a" if ratio is None else ("met" if float(ratio) <= 2.2 else "missed")
    return [
        "## Long recordings",
        "",
        "`tests/hardening/test_long_audio.py`, default limits (7,200 s of audio, 200 MB "
        "uploads), an untrained q2l-small so the figures measure the service, not a model. The "
        "files are real music (three test tracks as one 44.1 kHz stereo 96 kbps mp3, repeated "
        "frame by frame to length). Decoding streams one-second chunks from a worker process "
        "into windows; each request has at most one model call's worth of windows queued, and "
        "batches go to the least-served request first.",
        "",
        f"- **Two hours** ({two.get('audio_seconds', 'n/a')} s, {two.get('upload_mb', 'n/a')} "
        f"MB): 200 in {seconds(two.get('seconds'))} ({two.get('realtime', 'n/a')}x real time, "
        f"{two.get('windows', 'n/a')} windows); the service's peak RSS grew by "
        f"{two.get('peak_rss_growth_mb', 'n/a')} MB (the upload is held once; one float32 copy "
        "of the decoded audio alone would be 461 MB).",
        f"- **Four 30-minute uploads at once** ({four.get('audio_seconds_each', 'n/a')} s "
        f"each): all 200 in {seconds(four.get('seconds'))} "
        f"({four.get('realtime', 'n/a')}x real time together).",
        f"- **30-second clips beside a 60-minute track:** p50 "
        f"{seconds(beside.get('beside_p50_s'))} (max {seconds(beside.get('beside_max_s'))}) "
        f"against {seconds(beside.get('idle_p50_s'))} on the idle server, "
        f"{ratio if ratio is not None else 'n/a'}x; target about 2x: **{verdict}**.",
        "",
    ]


def _isolation_section(isolation: dict[str, Any]) -> list[str]:
    pcm = isolation.get("pcm_bytes")
    return [
        "## What decoder isolation costs",
        "",
        "`tests/hardening/test_decode_isolation.py` decodes the same 30 s real-music mp3 "
        f"{isolation.get('rounds', 'n/a')} times in the test process and through a decode "
        "worker (file over a pipe, float32 PCM back: "
        f"{'n/a' if pcm is None else f'{pcm / MB:.2f} MB'}), alternately; the worker returns the "
        f"same samples. Median: {isolation.get('in_process_ms', 'n/a')} ms in process, "
        f"{isolation.get('worker_ms', 'n/a')} ms through the worker, "
        f"**{isolation.get('overhead_ms', 'n/a')} ms** per request for the isolation.",
        "",
    ]


def _bugs_section() -> list[str]:
    return [
        "## Bugs these tests found, fixed with regression tests",
        "",
        "- Float WAV samples of 1e20 overflowed the model's power spectrum into NaN scores, and "
        "the response model refused NaN: **500**. Decoded samples are now clipped at ±100 "
        "(`tests/hardening/test_decoding.py`, corpus file `loud.wav`).",
        "- A truncated FLAC (an interrupted download) was **refused entirely** because the "
        "codec rejected the cut-off last frame; truncated mp3, Ogg and WAV were tagged. The "
        "decoder now skips packets the codec rejects and refuses a file only when more than a "
        "quarter of them are corrupt.",
        "- An mp3 whose frames change sample rate or channels midway (two files joined, a "
        "damaged frame header) made PyAV's resampler raise; the soundfile fallback then "
        "decoded garbage up to 7e26. A new resampler now takes over at each change.",
        "- A 760 kB FLAC of 8-channel 192 kHz silence made the decoder resample 15 minutes "
        "of 8 x 192 kHz audio before the duration limit stopped it (about 10 s of CPU per "
        "request here, 17 times the samples of a 44.1 kHz stereo file). Decoding work is now "
        "bounded by input samples: at most `max_audio_seconds` of 192 kHz stereo.",
        "- Under 10x overload, requests piled up in front of the two decoder threads: answers "
        "(503s included) took 40 s and a third of the requests got none within a minute. "
        "`TAGGER_MAX_INFLIGHT_REQUESTS` now refuses the excess with 503 before its body is "
        "read.",
        "- SIGTERM closed the listener at once (no unready period for load balancers) and the "
        "process then died by the re-raised signal (exit status -15). `app/service/server.py` now "
        "drains, answers stragglers 503 and exits 0.",
        "- slowapi (the usual FastAPI rate limiter) limited nothing: its middleware finds no "
        "endpoint under FastAPI 0.165's nested routers. The rate limit uses `limits` directly.",
        "",
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "reliability.md")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments, e.g. -k ssrf")
    args = parser.parse_args()
    started = dt.datetime.now(dt.UTC)
    load_before = load_average()
    began = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        results, junit = Path(tmp) / "results.jsonl", Path(tmp) / "junit.xml"
        status = run_tests(results, junit, args.pytest_args)
        figures, outcomes = load_figures(results), test_outcomes(junit)
    report = render(
        figures,
        outcomes,
        started=started,
        minutes=(time.monotonic() - began) / 60,
        load_before=load_before,
        load_after=load_average(),
    )
    args.out.write_text(report)
    print(f"wrote {args.out} (pytest exit status {status})", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
