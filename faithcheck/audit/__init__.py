"""The audit pipeline, above the call engine: load task -> baseline -> variants -> answers ->
outcomes -> scoring -> run directory. Its public stages are used by the audit and by
`--estimate` alike."""

from faithcheck.audit.pipeline import (
    AuditConfig,
    AuditResult,
    baseline,
    baseline_samples,
    expand_samples,
    resolve_rewrites,
    run_audit,
)

__all__ = [
    "AuditConfig",
    "AuditResult",
    "baseline",
    "baseline_samples",
    "expand_samples",
    "resolve_rewrites",
    "run_audit",
]
