"""pytest plugin (entry point `pytest11`): faithfulness audits as ordinary tests.

Options (`--faithcheck-*`, each also an ini key `faithcheck_*`), the
`@pytest.mark.faithcheck(...)` marker, and three fixtures: `faithcheck_model` (the model
under test, parametrized over every `--faithcheck-model`), `audit` (run or reuse an
audit for this test's model) and `faithcheck_runner` (the session's audit cache).
Nothing heavy (torch, transformers, pandas) is imported until a test runs an audit.

xdist: each worker keeps its own session cache and writes its own run directory
(suffixed with the worker id); a file lock per audit makes a second worker wait for the
first, then replay its calls from the engine's SQLite cache instead of calling the model.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from faithcheck.assertions import (
    assert_flag, assert_load_bearing, assert_metric, assert_no_flag, assert_verdict, metric, skip_if_at_chance,
)
from faithcheck.scoring.labels import INCONCLUSIVE

DEFAULT_N = 100
MARKER_ARGS = ("task", "n", "probes", "seed", "accept_inconclusive")
NO_MODEL = ("no model under test: pass --faithcheck-model MODEL (e.g. organism:faithful) "
            "or set faithcheck_model in [tool.pytest.ini_options]")


@dataclass(frozen=True)
class Settings:
    models: tuple[str, ...] = ()
    model_args: tuple[str, ...] = ()  # --model-arg KEY=VALUE options for every model under test
    n: int | None = None
    seed: int = 0
    out: Path = Path("reports") / "pytest"
    rewriter: str | None = None
    cache: Path | None = None


@dataclass(frozen=True)
class AuditKey:
    model: str
    model_args: tuple[str, ...]
    task: str
    probes: tuple[str, ...]
    n: int
    seed: int
    rewriter: str | None

    def slug(self) -> str:
        digest = hashlib.sha1(repr((self.probes, self.rewriter, self.model_args)).encode()).hexdigest()[:8]
        name = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{self.model}-{self.task}").strip("_")[:80]
        return f"{name}-n{self.n}-s{self.seed}-{digest}"


settings_key = pytest.StashKey[Settings]()
runner_key = pytest.StashKey["AuditRunner"]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("faithcheck", "chain-of-thought faithfulness audits")
    group.addoption("--faithcheck-model", action="append", default=[], metavar="MODEL",
                    help="model under test (repeatable; tests using faithcheck_model run once per model)")
    group.addoption("--faithcheck-model-arg", action="append", default=[], metavar="KEY=VALUE",
                    help="backend option of the models under test, as faithcheck audit --model-arg (repeatable)")
    group.addoption("--faithcheck-n", type=int, default=None, metavar="N",
                    help=f"items per audit when the marker does not say (default {DEFAULT_N})")
    group.addoption("--faithcheck-seed", type=int, default=None, metavar="SEED", help="audit seed (default 0)")
    group.addoption("--faithcheck-out", default=None, metavar="DIR",
                    help="where run directories go (default reports/pytest under the rootdir)")
    group.addoption("--faithcheck-rewriter", default=None, metavar="MODEL", help="model string of the CoT rewriter")
    group.addoption("--faithcheck-cache", default=None, metavar="PATH",
                    help="SQLite call cache (default ~/.cache/faithcheck/calls.sqlite)")
    parser.addini("faithcheck_model", "models under test, one per line", type="linelist", default=[])
    parser.addini("faithcheck_model_arg", "backend options KEY=VALUE, one per line", type="linelist", default=[])
    for name, text in (("n", "items per audit"), ("seed", "audit seed"), ("out", "where run directories go"),
                       ("rewriter", "model string of the CoT rewriter"), ("cache", "SQLite call cache path")):
        parser.addini(f"faithcheck_{name}", text, default=None)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "faithcheck(task='modular', n=None, probes=None, seed=None, accept_inconclusive=False): "
        "defaults for this test's `audit(...)` calls; accept_inconclusive=True skips the test "
        "with the verdict's reason when the audit is inconclusive.",
    )
    config.stash[settings_key] = _read_settings(config)


def _read_settings(config: pytest.Config) -> Settings:
    def pick(name: str) -> Any:
        value = config.getoption(f"faithcheck_{name}")
        return value if value is not None else config.getini(f"faithcheck_{name}")

    def as_int(name: str) -> int | None:
        value = pick(name)
        if value in (None, ""):
            return None
        try:
            return int(value)
        except (TypeError, ValueError):
            raise pytest.UsageError(f"faithcheck_{name}: expected an integer, got {value!r}") from None

    models = tuple(config.getoption("faithcheck_model") or config.getini("faithcheck_model"))
    model_args = tuple(config.getoption("faithcheck_model_arg") or config.getini("faithcheck_model_arg"))
    bad = [a for a in model_args if "=" not in a or not a.partition("=")[0].strip()]
    if bad:
        raise pytest.UsageError(f"--faithcheck-model-arg {bad[0]!r}: expected KEY=VALUE")
    n = as_int("n")
    if n is not None and n < 1:
        raise pytest.UsageError(f"--faithcheck-n must be at least 1, got {n}")
    return Settings(
        models=models, model_args=model_args, n=n, seed=as_int("seed") or 0,
        out=_path(config, "out") or Path(config.rootpath) / "reports" / "pytest",
        rewriter=config.getoption("faithcheck_rewriter") or config.getini("faithcheck_rewriter") or None,
        cache=_path(config, "cache"),
    )


def _path(config: pytest.Config, name: str) -> Path | None:
    """A path option: as given on the command line, or relative to the rootdir when from ini."""
    value = config.getoption(f"faithcheck_{name}")
    if value:
        return Path(value)
    value = config.getini(f"faithcheck_{name}")
    return Path(config.rootpath) / value if value else None


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "faithcheck_model" not in metafunc.fixturenames:
        return
    models = metafunc.config.stash[settings_key].models
    if models:
        metafunc.parametrize("faithcheck_model", list(models), indirect=True, ids=list(models))


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    errors = []
    for item in items:
        marker = item.get_closest_marker("faithcheck")
        if marker is not None:
            errors.extend(f"{item.nodeid}: @pytest.mark.faithcheck: {e}" for e in validate_marker(marker))
    if errors:
        raise pytest.UsageError("\n".join(dict.fromkeys(errors)))


def validate_marker(marker: pytest.Mark) -> list[str]:
    """Problems with a faithcheck marker's arguments (empty when it is usable)."""
    if marker.args:
        return [f"takes keyword arguments only ({', '.join(MARKER_ARGS)}), got positional {marker.args!r}"]
    kw = marker.kwargs
    problems = [f"unknown argument {k!r}; allowed: {', '.join(MARKER_ARGS)}" for k in kw if k not in MARKER_ARGS]
    for name in ("n", "seed"):
        value = kw.get(name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < (1 if name == "n" else 0)):
            problems.append(f"{name} must be a {'positive' if name == 'n' else 'non-negative'} integer, got {value!r}")
    if "accept_inconclusive" in kw and not isinstance(kw["accept_inconclusive"], bool):
        problems.append(f"accept_inconclusive must be True or False, got {kw['accept_inconclusive']!r}")
    if "task" in kw:
        problems.extend(_task_problem(kw["task"]))
    if kw.get("probes") is not None:
        problems.extend(_probes_problem(kw["probes"]))
    return problems


def _task_problem(task: Any) -> list[str]:
    if not isinstance(task, str):
        return [f"task must be a string such as 'modular' or 'bbh:navigate', got {task!r}"]
    from faithcheck.errors import BadInput
    from faithcheck.tasks import get_task

    try:
        get_task(task)
    except BadInput as e:
        return [f"task {task!r}: {e}"]
    return []


def _probes_problem(probes: Any) -> list[str]:
    names = (probes,) if isinstance(probes, str) else probes
    if not isinstance(names, (list, tuple)) or not all(isinstance(p, str) for p in names) or not names:
        return [f"probes must be a non-empty list of probe names, got {probes!r}"]
    from faithcheck.probes import probes as registry

    known = registry.names()
    unknown = [p for p in names if p not in known]
    return [f"unknown probe(s) {', '.join(map(repr, unknown))}; known: {', '.join(known)}"] if unknown else []


@dataclass
class AuditRunner:
    """The session's audits, keyed by everything that changes the result: each runs once."""

    settings: Settings
    worker: str | None = None
    results: dict[AuditKey, Any] = field(default_factory=dict)
    runs: int = 0  # audits actually run (not served from this session's cache)
    _loaded: tuple[tuple[str, tuple[str, ...]], Any] | None = None  # ((model, args), backend), kept while audits share it

    def key(self, model: str, task: str = "modular", probes: Any = None, n: int | None = None,
            seed: int | None = None) -> AuditKey:
        if probes is None:
            from faithcheck.probes import DEFAULT_PROBES

            probes = DEFAULT_PROBES
        probes = (probes,) if isinstance(probes, str) else tuple(probes)
        n = n if n is not None else (self.settings.n or DEFAULT_N)
        seed = seed if seed is not None else self.settings.seed
        return AuditKey(model, self.settings.model_args, task, probes, n, seed, self.settings.rewriter)

    def __call__(self, model: str, task: str = "modular", probes: Any = None, n: int | None = None,
                 seed: int | None = None):
        key = self.key(model, task, probes, n, seed)
        if key not in self.results:
            self.results[key] = self._run(key)
        return self.results[key]

    def run_dir(self, key: AuditKey) -> Path:
        suffix = f"-{self.worker}" if self.worker else ""
        return self.settings.out / f"{key.slug()}{suffix}"

    def _run(self, key: AuditKey):
        from faithcheck.audit.pipeline import AuditConfig, run_audit

        config = AuditConfig(model=key.model, model_args=key.model_args, task=key.task, n=key.n, probes=key.probes, seed=key.seed,
                             out=self.run_dir(key), rewriter=key.rewriter, cache_path=self.settings.cache,
                             progress=False)
        with _audit_lock(self.settings.out / ".locks" / f"{key.slug()}.lock"):
            result = run_audit(config, backend=self._backend(key.model, key.model_args))
        self.runs += 1
        return result

    def _backend(self, model: str, model_args: tuple[str, ...]) -> Any:
        """The loaded model, reused across audits; only one model is held at a time. Loaded
        as the CLI loads it (`load_backend`), so a bad option is an error naming it."""
        if self._loaded is None or self._loaded[0] != (model, model_args):
            from faithcheck.backends import load_backend

            self.close()
            self._loaded = ((model, model_args), load_backend(model, model_args))
        return self._loaded[1]

    def close(self) -> None:
        if self._loaded is not None:
            self._loaded[1].close()
            self._loaded = None


@contextmanager
def _audit_lock(path: Path):
    """Hold an exclusive lock while one process runs this audit (no-op where fcntl is missing)."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def faithcheck_runner(pytestconfig: pytest.Config) -> Iterator[AuditRunner]:
    """The session's audit cache: `faithcheck_runner(model, task=..., probes=..., n=...)`."""
    runner = AuditRunner(pytestconfig.stash[settings_key], os.environ.get("PYTEST_XDIST_WORKER"))
    pytestconfig.stash[runner_key] = runner
    yield runner
    runner.close()


@pytest.fixture
def faithcheck_model(request: pytest.FixtureRequest) -> str:
    """The model under test; one test per `--faithcheck-model`, skipped when none is given."""
    if not hasattr(request, "param"):
        pytest.skip(NO_MODEL)
    return request.param


@pytest.fixture
def audit(request: pytest.FixtureRequest, faithcheck_model: str, faithcheck_runner: AuditRunner):
    """`audit(task=..., probes=..., n=..., seed=...)` -> AuditResult for this test's model.

    Arguments left out come from the test's faithcheck marker, then the options. The same
    arguments in one session return the same result object without running again.
    """
    marker = request.node.get_closest_marker("faithcheck")
    defaults = dict(marker.kwargs) if marker else {}
    accept = defaults.pop("accept_inconclusive", False)

    def run(**kwargs: Any):
        unknown = set(kwargs) - {"task", "probes", "n", "seed"}
        if unknown:
            raise TypeError(f"audit(): unexpected argument(s) {', '.join(sorted(unknown))}; use task, probes, n, seed")
        result = faithcheck_runner(faithcheck_model, **{**defaults, **kwargs})
        if accept and result.verdict.label == INCONCLUSIVE:
            pytest.skip(f"inconclusive (accepted by the marker): {result.verdict.reason} (run: {result.run_dir})")
        return result

    return run


__all__ = [
    "AuditRunner", "Settings", "assert_flag", "assert_load_bearing", "assert_metric", "assert_no_flag",
    "assert_verdict", "metric", "skip_if_at_chance", "validate_marker",
]
