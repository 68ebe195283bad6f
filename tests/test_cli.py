"""The command line: exit statuses, messages naming the file/row/flag, and a real audit's run directory."""

import json
import re
import subprocess
import sys

import pandas as pd
import pytest

from faithcheck.cli import main


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "faithcheck.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=600)


def test_list_names_everything(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("modular", "gsm8k", "bbh", "mc", "early_answering", "mistakes", "hints", "hf", "openai",
                 "vllm", "organism:faithful", "organism:encoded"):
        assert name in out


HEAVY = ("torch", "transformers", "pandas", "matplotlib")


@pytest.mark.parametrize("argv", [None, ["list"], ["--help"]])
def test_cli_import_list_and_help_stay_light(argv):
    """`faithcheck --help` and `faithcheck list` must answer at once: no heavy library on the way."""
    run = "" if argv is None else (
        "import contextlib, io\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    try: main({argv!r})\n"
        "    except SystemExit: pass\n")
    code = f"import sys\nfrom faithcheck.cli import main\n{run}print(sorted({{m.split('.')[0] for m in sys.modules}} & {set(HEAVY)!r}))"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize("args, needle", [
    (["audit", "organism:faithful", "--task", "nope"], "--task"),
    (["audit", "organism:faithful", "--probes", "early_answering,bogus"], "bogus"),
    (["audit", "nonsense", "--n", "3"], "SCHEME:TARGET"),
    (["audit", "zzz:x"], "unknown backend 'zzz'"),
    (["audit", "organism:nobody"], "nobody"),
    (["audit", "organism:faithful", "--model-arg", "colour=blue"], "colour"),
    (["audit", "organism:faithful", "--model-arg", "dtype"], "key=value"),
    (["audit", "organism:faithful", "--task", "mc:/does/not/exist.jsonl"], "/does/not/exist.jsonl"),
    (["audit", "organism:faithful", "--fail-on", "everything"], "--fail-on"),
    (["audit", "organism:faithful", "--n", "0"], "--n"),
])
def test_bad_input_exits_2_naming_the_culprit(args, needle, capsys, tmp_path):
    try:
        code = main([*args, "--out", str(tmp_path / "run"), "--cache", str(tmp_path / "c.sqlite")])
    except SystemExit as e:  # argparse's own usage errors
        code = e.code
    assert code == 2
    assert needle in capsys.readouterr().err


def test_malformed_mc_rows_are_skipped_counted_and_reported(tmp_path, capsys):
    data = tmp_path / "q.jsonl"
    good = {"question": "Which number is even?", "choices": ["3", "4", "5"], "answer": "B"}
    lines = [json.dumps(good)] * 25 + ["{not json", json.dumps({"question": "x", "choices": ["a"], "answer": "A"})]
    data.write_text("\n".join(lines) + "\n")
    code = main(["audit", "organism:faithful", "--task", f"mc:{data}", "--n", "30", "--probes", "no_cot",
                 "--out", str(tmp_path / "run"), "--cache", str(tmp_path / "c.sqlite"), "--quiet"])
    # the organism's 128-token context cannot hold an mc prompt: every call fails, which is
    # not a wrong answer, so the run is not measured (exit 4) but still written and reported
    assert code == 4
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["n_items"] == 25 and summary["measurement"]["measured"] is False
    assert len(summary["skipped_rows"]) == 2
    assert "row 26" in summary["skipped_rows"][0] and "row 27" in summary["skipped_rows"][1]
    assert "skipped 2 malformed row(s)" in capsys.readouterr().out


def test_audit_writes_the_run_directory_and_resumes_from_the_cache(tmp_path):
    out, cache = tmp_path / "run", tmp_path / "c.sqlite"
    args = ["audit", "organism:faithful", "--n", "20", "--probes", "no_cot,early_answering,filler",
            "--out", str(out), "--cache", str(cache), "--quiet"]
    first = run_cli(*args)
    assert first.returncode == 0, first.stderr
    for name in ("summary.json", "outcomes.parquet", "outcomes.csv", "traces.jsonl", "manifest.json", "report.html"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    manifest = json.loads((out / "manifest.json").read_text())
    assert summary["schema_version"] == 2 and summary["verdict"]["label"] == "load_bearing"
    outcomes = pd.read_parquet(out / "outcomes.parquet")
    csv = pd.read_csv(out / "outcomes.csv")
    assert len(outcomes) == len(csv) > 0
    traces = [json.loads(x) for x in (out / "traces.jsonl").read_text().splitlines()]
    baselines = [t for t in traces if t["type"] == "baseline"]
    # the summary's CoT accuracy is the mean of the traces' correctness, computed here independently
    assert summary["accuracy"]["cot"]["estimate"] == pytest.approx(sum(t["correct"] for t in baselines) / len(baselines))
    no_cot = outcomes[outcomes["probe"] == "no_cot"]
    assert summary["accuracy"]["no_cot"]["estimate"] == pytest.approx(no_cot["correct"].mean())
    assert manifest["engine"]["model_calls"] > 0 and manifest["model_fingerprint"].startswith("hf:")
    second = run_cli(*args)
    assert second.returncode == 0, second.stderr
    again = json.loads((out / "manifest.json").read_text())["engine"]
    assert again["model_calls"] == 0 and again["cache_hits"] == manifest["engine"]["unique"]


def test_fail_on_exits_3_when_the_flag_is_raised(tmp_path):
    # in process: two fresh interpreters importing torch cost more than the audits themselves
    # 30 items: with 20 all-zero AOCs the honest (Wilson) upper bound, 0.161, cannot clear the 0.15 rule
    args = ["--n", "30", "--probes", "no_cot,early_answering,mistakes", "--cache", str(tmp_path / "c.sqlite"),
            "--quiet", "--fail-on", "post_hoc_rationalization"]
    assert main(["audit", "organism:post_hoc", *args, "--out", str(tmp_path / "a")]) == 3
    assert main(["audit", "organism:faithful", *args, "--out", str(tmp_path / "b")]) == 0


def test_estimate_runs_nothing_but_calibration(tmp_path):
    res = run_cli("audit", "organism:faithful", "--n", "50", "--probes", "early_answering", "--estimate",
                  "--cache", str(tmp_path / "c.sqlite"), "--out", str(tmp_path / "run"))
    assert res.returncode == 0, res.stderr
    assert "model calls" in res.stdout and "time estimate" in res.stdout
    assert not (tmp_path / "run").exists()
    sent = re.search(r"tokens to compute:\s+~([\d,]+) prompt \+ ~([\d,]+) generated", res.stdout)
    computed = re.search(r"computed tokens:\s+~([\d,]+) after prefix sharing", res.stdout)
    prompt, generated, computed = (int(x.replace(",", "")) for x in (*sent.groups(), computed.group(1)))
    # prefix sharing: the organism computes fewer tokens than it is sent and generates
    assert 0 < computed < prompt + generated


def test_a_clean_audit_warns_about_nothing_deprecated(tmp_path):
    """Every path an organism audit takes through transformers (plain batches, the prefix tree,
    forced answers) uses the current API: no FutureWarning or DeprecationWarning, and none of
    transformers' own logged deprecation notices (`past_key_values` is deprecated ...)."""
    import logging
    import warnings

    class Collect(logging.Handler):
        def __init__(self):
            super().__init__(logging.WARNING)
            self.messages: list[str] = []

        def emit(self, record):
            self.messages.append(record.getMessage())

    logged = Collect()
    hf_logger = logging.getLogger("transformers")  # transformers does not propagate to the root logger
    hf_logger.addHandler(logged)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            code = main(["audit", "organism:faithful", "--n", "4", "--probes", "early_answering",
                         "--out", str(tmp_path / "run"), "--cache", str(tmp_path / "c.sqlite"), "--quiet"])
    finally:
        hf_logger.removeHandler(logged)
    assert code == 0
    deprecations = [f"{w.category.__name__}: {w.message} ({w.filename}:{w.lineno})" for w in caught
                    if issubclass(w.category, (DeprecationWarning, FutureWarning)) or "deprecat" in str(w.message).lower()]
    assert deprecations == []
    assert [m for m in logged.messages if "deprecat" in m.lower()] == []
