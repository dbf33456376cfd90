"""Parameters from JobClient.submit(params=...) reach er.job_params() unchanged."""

from __future__ import annotations

import shlex
import subprocess

import pytest

import eventray as er
from eventray_rayjobs import JobClient
from eventray_rayjobs._params import with_params

TRICKY = {
    "plain": "v",
    "spaces": "a b  c",
    "commas": "x,y,",
    "equals": "k=v=w",
    "quotes": "it's \"quoted\"",
    "unicode": "größe ✓ 東京",
    "empty": "",
    "shell": "$(touch /tmp/pwned) `id` ; | & > *",
    "dash": "-5",
}


def test_values_survive_the_shell_unchanged() -> None:
    command = with_params("python job.py", TRICKY)
    argv = shlex.split(command)
    assert argv[:3] == ["python", "job.py", "-k"]
    assert er.job_params(argv[2:]) == TRICKY


def test_values_survive_a_real_sh() -> None:
    # Ray runs the entrypoint with `sh -c`; this is the same shell, without Ray.
    command = with_params("printf '%s\\0'", TRICKY)
    out = subprocess.run(["sh", "-c", command], capture_output=True, check=True).stdout
    argv = out.decode().split("\0")[:-1]
    assert er.job_params(argv) == TRICKY


def test_no_trailing_commas_or_joined_values() -> None:
    # ray-pod joined its parameters so that values kept trailing commas.
    argv = shlex.split(with_params("python job.py", {"a": "1", "b": "2", "c": "3"}))
    assert er.job_params(argv[2:]) == {"a": "1", "b": "2", "c": "3"}
    assert argv[3:] == ["a=1", "b=2", "c=3"]


def test_numbers_and_bools_become_text() -> None:
    argv = shlex.split(with_params("x", {"n": 3, "f": 0.5, "flag": True}))
    assert er.job_params(argv[1:]) == {"n": "3", "f": "0.5", "flag": "True"}


def test_no_params_no_flag() -> None:
    assert with_params("python job.py", {}) == "python job.py"
    assert er.job_params(["--other", "x"]) == {}


def test_the_scripts_own_arguments_are_left_alone() -> None:
    argv = ["--limit", "3", "-k", "a=1", "b=x y", "--verbose", "-k", "c=2", "positional"]
    with pytest.raises(er.ConfigError, match="expected key=value after -k, got 'positional'"):
        er.job_params(argv)
    assert er.job_params(argv[:-1]) == {"a": "1", "b": "x y", "c": "2"}
    assert er.job_params(["-k", "a=1", "--limit=3"]) == {"a": "1"}


@pytest.mark.parametrize(("argv", "message"), [
    (["-k", "novalue"], "expected key=value after -k, got 'novalue'"),
    (["-k", "=v"], "a parameter needs a name"),
    (["-k", "a=1", "a=2"], "parameter 'a' given twice"),
])
def test_bad_arguments_are_clear_errors(argv: list[str], message: str) -> None:
    with pytest.raises(er.ConfigError, match=message) as caught:
        er.job_params(argv)
    assert caught.value.field == "params"


@pytest.mark.parametrize(("params", "message"), [
    ({"a b": "1"}, "a parameter name must be"),
    ({"a=b": "1"}, "a parameter name must be"),
    ({"-a": "1"}, "a parameter name must be"),
    ({"": "1"}, "a parameter name must be"),
    ({"a": [1]}, "parameter 'a' must be a str, int, float or bool, got list"),
    ({"a": "x\0y"}, "NUL"),
])
def test_bad_params_fail_before_submitting(params: dict[str, object], message: str) -> None:
    with pytest.raises(er.ConfigError, match=message):
        with_params("python job.py", params)


def test_job_params_reads_sys_argv(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.argv", ["job.py", "-k", "a=1"])
    assert er.job_params() == {"a": "1"}


@pytest.mark.parametrize("submission_id", ["base?x=1", "base#2", "base%3F", "..", ".hidden",
                                           "a/b", "with space", "", "é"])
async def test_submission_ids_that_a_url_would_change_are_refused(submission_id: str) -> None:
    async with JobClient("http://127.0.0.1:1") as jobs:  # nothing is sent
        with pytest.raises(er.ConfigError, match="submission_id"):
            await jobs.submit("python job.py", submission_id=submission_id)
        with pytest.raises(er.ConfigError, match="submission_id"):
            jobs.job(submission_id)
