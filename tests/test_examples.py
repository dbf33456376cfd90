"""Every example runs and prints what it promises."""

from __future__ import annotations

import ast
import json
import os
import re
import signal
import smtplib
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name: str, *args: str, timeout: float = 180,
                env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        capture_output=True, text=True, timeout=timeout, env=env,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture
def on_ray(ray_session: None) -> dict[str, str]:
    """The environment of an example joining the test session's Ray."""
    import ray

    return {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address}


def test_hello_on_memory() -> None:
    assert run_example("hello.py", "memory").splitlines() == ["hello", "world"]


def test_hello_on_the_default_transport(on_ray: dict[str, str]) -> None:
    assert run_example("hello.py", env=on_ray).splitlines() == ["hello", "world"]


@pytest.mark.parametrize("transport", ["memory", "ray"])
def test_word_count(transport: str, request: pytest.FixtureRequest) -> None:
    env = request.getfixturevalue("on_ray") if transport == "ray" else None
    lines = run_example("word_count.py", transport, env=env).splitlines()
    counts: dict[str, int] = {}
    for line in lines:
        assert line.startswith("result (")
        word, count = ast.literal_eval(line.removeprefix("result "))
        counts[word] = count
    words = (EXAMPLES / "word_count.py").read_text().split()
    expected = {w: words.count(w) for w in words if w != "ray"}
    assert counts == expected


@pytest.mark.parametrize("transport", ["memory", "ray"])
def test_windows(transport: str, request: pytest.FixtureRequest) -> None:
    env = request.getfixturevalue("on_ray") if transport == "ray" else None
    out = run_example("windows.py", transport, env=env).splitlines()
    views = [line for line in out if line.startswith("views of")]  # dead letters interleave
    assert views == [
        "views of /home [0s, 10s): 2",
        "views of /docs [0s, 10s): 2",
        "views of /pricing [10s, 20s): 1",
        "views of /home [10s, 20s): 2",
        "views of /docs [20s, 30s): 1",
        "views of /docs [50s, 60s): 1",
    ]
    assert "session of ann [1s, 55s): ['/home', '/docs', '/docs', '/home', '/docs']" in out
    assert "session of bob [58s, 88s): ['/docs']" in out
    late = [line for line in out if line.startswith("late: /home LateEvent")]
    assert len(late) == 2, "cat's view is late for both windowings"


@pytest.mark.parametrize("transport", ["memory", "ray"])
def test_checkpoints_example_resumes_with_its_windows(transport: str,
                                                      request: pytest.FixtureRequest) -> None:
    env = request.getfixturevalue("on_ray") if transport == "ray" else None
    assert run_example("checkpoints.py", transport, env=env).splitlines() == [
        "stopped; resuming",
        "ann ordered 3 times in [0s, 60s)",
        "bob ordered 1 times in [0s, 60s)",
    ]


READMES = [EXAMPLES.parent / "README.md", *EXAMPLES.parent.glob("*/*/README.md")]


@pytest.mark.parametrize("readme", READMES, ids=lambda p: str(p.relative_to(EXAMPLES.parent)))
def test_readme_snippets_come_from_the_examples(readme: Path) -> None:
    blocks = readme.read_text().split("```python\n")[1:]
    sources = [path.read_text() for path in EXAMPLES.rglob("*.py")]
    assert blocks, "the README shows code"
    for block in blocks:
        snippet = block.split("```")[0]
        assert any(snippet in source for source in sources), f"not in any example:\n{snippet}"


def test_actors_example(on_ray: dict[str, str]) -> None:
    assert run_example("actors.py", env=on_ray).splitlines() == [
        "Counter saw 1000", "BatchCounter saw 1000"
    ]


def test_quotes_on_ray(on_ray: dict[str, str]) -> None:
    assert run_example("quotes.py", env=on_ray).splitlines() == [
        "#rayvens AAPL is up", "#rayvens AAPL is unchanged", "#rayvens AAPL is down"
    ]


@pytest.mark.parametrize("transport", ["memory", "ray"])
def test_embedded_in_aiohttp(transport: str, request: pytest.FixtureRequest) -> None:
    env = request.getfixturevalue("on_ray") if transport == "ray" else None
    assert run_example("embed_aiohttp.py", transport, env=env).splitlines() == [
        "POST /orders 202", "POST /orders 202", "POST /orders 202", "POST /orders 400",
        "GET /totals {'ann': 8, 'bob': 7}",
    ]


def test_custom_connector(tmp_path: Path) -> None:
    path = tmp_path / "rolls.jsonl"
    out = run_example("custom_connector.py", str(path)).splitlines()
    rolls = [int(line) for line in path.read_text().splitlines()]
    assert len(rolls) == 100 and set(rolls) <= set(range(1, 7))
    assert out == [
        "wrote 100 rolls to rolls.jsonl",
        f"rolled {rolls.count(6)} sixes",
        "bad config: dice-source: field 'rolls': Field required (also field 'rols': Extra "
        "inputs are not permitted (did you mean 'rolls'?))",
    ]


def test_files_pipeline() -> None:
    assert run_example("files_pipeline.py", "memory").splitlines() == [
        "errors/<run>-0000000000.jsonl: [{'error': 'disk full'}, {'error': 'disk still full'}]",
        "logs/app.log: 70 bytes",
        "last checkpoint: True",
    ]


@pytest.mark.parametrize("transport", ["memory", "ray"])
def test_mail_and_sms_bridge(transport: str, request: pytest.FixtureRequest) -> None:
    env = request.getfixturevalue("on_ray") if transport == "ray" else None
    assert run_example("mail_and_sms.py", transport, env=env).splitlines() == [
        "sms to +15552223333: dinner: at 7, see you there",
        "mail to ops@example.org: SMS from +15552223333: on my way",
    ]


SPACEBEAVER = "spacebeaver/bridge.py"


def test_spacebeaver_scripted_each_message_once(on_ray: dict[str, str], tmp_path: Path) -> None:
    record = tmp_path / "record.json"
    out = run_example(SPACEBEAVER, "--scripted", "--record", str(record),
                      env=on_ray).splitlines()
    got = json.loads(record.read_text())
    assert got["satellite"] == [  # mail in, satellite out; SMS in, satellite out
        {"device_id": 4101, "data": "bob@example.org Trail?: How is the hike going?"},
        {"device_id": 4102, "data": "+15557654321 Pick up milk on the way back?"},
    ]
    assert got["mail"] == [  # device packet in, e-mail out
        {"from": "ann@beaver.example", "to": ["bob@example.org"], "subject": "From ann",
         "text": "All good, camping at the lake tonight."}]
    assert got["sms"] == [  # device packet in, SMS out
        {"from": "+15550104102", "to": ["+15557654321"], "text": "Will do, see you Sunday."}]
    assert got["acked"] == got["packets"], "each device packet acknowledged once safe"
    assert len(got["packets"]) == 2
    first, second = got["packets"]
    assert set(out) >= {
        "mail bob@example.org -> ann@beaver.example => satellite to ann's device 4101",
        f"packet {first} from ann's device 4101 => mail to bob@example.org",
        "sms +15557654321 -> +15550104102 => satellite to raj's device 4102",
        f"packet {second} from raj's device 4102 => sms to +15557654321",
    }
    finals = [line.split(":")[0] for line in out
              if re.fullmatch(r"spacebeaver-\w+: final checkpoint [1-9]\d* taken", line)]
    assert sorted(finals) == ["spacebeaver-downlink", "spacebeaver-uplink"]
    assert not [line for line in out if line.startswith("dead letter")]


def _line_starting(process: subprocess.Popen[str], prefix: str) -> str:
    assert process.stdout is not None
    while line := process.stdout.readline():
        if line.startswith(prefix):
            return line.strip()
    raise AssertionError(f"the bridge ended (code {process.wait()}) before {prefix!r}")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_spacebeaver_drains_on_a_signal(signum: int, on_ray: dict[str, str],
                                        tmp_path: Path) -> None:
    record = tmp_path / "record.json"
    with subprocess.Popen([sys.executable, str(EXAMPLES / SPACEBEAVER), "--record",
                           str(record)], stdout=subprocess.PIPE, text=True,
                          env=on_ray) as process:
        try:
            listening = _line_starting(process, "listening: smtp ")
            host, port = listening.split()[2].rstrip(",").split(":")
            with smtplib.SMTP(host, int(port), timeout=60) as in_flight, \
                    smtplib.SMTP(host, int(port), timeout=60) as newcomer:
                in_flight.ehlo()
                newcomer.ehlo()
                in_flight.mail("carol@example.org")
                in_flight.rcpt("raj@beaver.example")
                assert in_flight.docmd("DATA")[0] == 354
                process.send_signal(signum)  # Ctrl-C while the message is being transmitted
                _line_starting(process, "draining")
                assert newcomer.mail("dave@example.org")[0] == 421, "no new mail now"
                in_flight.send(b"Subject: late\r\n\r\nstill delivered\r\n.\r\n")
                assert in_flight.getreply()[0] == 250, "the message in flight is accepted"
            assert process.wait(timeout=120) == 0
        finally:
            if process.poll() is None:
                process.kill()
    got = json.loads(record.read_text())
    assert got["satellite"] == [{"device_id": 4102, "data": "carol@example.org late: "
                                                            "still delivered"}]


def test_from_rayvens(on_ray: dict[str, str]) -> None:
    lines = run_example("from_rayvens.py", env=on_ray).splitlines()
    hello = [line for line in lines if line in ("hello", "world")]
    assert hello == ["hello", "world"]  # the topic's events, in order (others may interleave)
    assert [line for line in lines if line not in hello] == [
        "to be", "or not", "counts [('be', 2), ('not', 1), ('or', 1), ('to', 2)]"
    ]


def test_ray_jobs_example() -> None:
    # It starts a Ray head with the job server of its own (RayJobCluster), stopped at its end.
    assert run_example("ray_jobs.py").splitlines() == [
        "hello Ray, and you: 3 items",
        "python hello_job.py -k 'who=Ray, and you' items=a,b,c SUCCEEDED",
        "last status event: SUCCEEDED",
    ]
