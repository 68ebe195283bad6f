"""pytester for the plugin tests, and a fake audit engine to put under them.

`FAKE_ENGINE` is a conftest for the pytester directory: it replaces `run_audit` with a
stub whose verdict follows the model name (`fake:load_bearing`, `fake:post_hoc`,
`fake:inconclusive`) and logs each call to `audit_calls.log`, so plugin behaviour
(caching, messages, xdist) is checked without a model.
"""

import pytest

# pytester's in-process runs drop modules first imported inside them, and numpy cannot be
# imported twice in one process: load the engine here, before any pytester run.
import faithcheck.audit.pipeline  # noqa: F401
import faithcheck.tasks  # noqa: F401


FAKE_ENGINE = '''
import os
from pathlib import Path

import faithcheck.backends as backends_module
import faithcheck.audit.pipeline as run_module
from faithcheck.audit.pipeline import AuditResult
from faithcheck.probes import ProbeMetrics
from faithcheck.scoring.stats import Estimate
from faithcheck.scoring.verdict import Flag, Verdict

CALLS = Path(__file__).parent / "audit_calls.log"
AOC = {"fake:load_bearing": 0.6, "fake:post_hoc": 0.04, "fake:inconclusive": 0.1}


def fake_run_audit(config, backend=None, cache=None):
    with open(CALLS, "a") as f:
        f.write(f"{os.environ.get('PYTEST_XDIST_WORKER', 'main')} {config.model} {config.task} {config.n} {config.out}\\n")
    aoc = AOC[config.model]
    ea = Estimate(aoc, max(aoc - 0.05, 0.0), aoc + 0.05, config.n, "bootstrap", 0.001, 0.002)
    same0 = Estimate(0.95, 0.85, 0.99, config.n, "wilson")
    cot = Estimate(0.9, 0.8, 0.95, config.n, "wilson")
    if config.model == "fake:post_hoc":
        flag = Flag("post_hoc_rationalization", "the answer is fixed before the CoT",
                    {"early_answering.aoc": {**ea.to_dict(), "control": "AOC upper bound <= 0.15"}})
        verdict = Verdict("post_hoc_rationalization", flag.reason, (flag,))
    elif config.model == "fake:inconclusive":
        cot = Estimate(0.05, 0.01, 0.2, config.n, "wilson")
        verdict = Verdict("inconclusive", "CoT accuracy is within 10% of chance", required_n=244)
    else:
        verdict = Verdict("load_bearing", "the answer depends on what the CoT says")
    Path(config.out).mkdir(parents=True, exist_ok=True)
    (Path(config.out) / "report.html").write_text("<html></html>")
    metrics = {"early_answering": ProbeMetrics("early_answering", "aoc", ea, {"same_at_0": same0})}
    summary = {"n_items": config.n, "chance": 0.043, "accuracy": {"cot": cot.to_dict()}}
    return AuditResult(config, Path(config.out), summary, None, (), metrics, verdict)


class FakeBackend:
    def close(self):
        pass


REAL = (run_module.run_audit, backends_module.load_backend)


def pytest_configure(config):
    run_module.run_audit = fake_run_audit
    backends_module.load_backend = lambda model, model_args=None: FakeBackend()


def pytest_unconfigure(config):
    run_module.run_audit, backends_module.load_backend = REAL
'''


@pytest.fixture
def fake(pytester: pytest.Pytester) -> pytest.Pytester:
    """A pytester directory whose audits go to the fake engine."""
    pytester.makeconftest(FAKE_ENGINE)
    return pytester


RECORD_LOADS = '''

LOADS = Path(__file__).parent / "loads.log"


def recording_load(model, model_args=None):
    with open(LOADS, "a") as f:
        f.write(f"{model} {list(model_args or [])}\\n")
    return FakeBackend()


def recording_run_audit(config, backend=None, cache=None):
    with open(LOADS, "a") as f:
        f.write(f"audit {list(config.model_args)}\\n")
    return fake_run_audit(config, backend, cache)


def pytest_configure(config):
    run_module.run_audit = recording_run_audit
    backends_module.load_backend = recording_load
'''


@pytest.fixture
def fake_loads(pytester: pytest.Pytester) -> pytest.Pytester:
    """`fake`, logging every backend load to loads.log."""
    pytester.makeconftest(FAKE_ENGINE + RECORD_LOADS)
    return pytester
