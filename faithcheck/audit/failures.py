"""Whether a run measured the model at all: failed model calls are never answers.

A failed call (a server error, a timeout, a batch that crashed) is recorded as failed,
left out of every rate and counted beside it. Past a threshold the run as a whole could
not be measured: any failed baseline call (its item has no reference answer, so none of
its variants can be read), or more than `max_failed_share` of all calls. Such a run's
verdict is `inconclusive`, its summary, report and CLI say why, and the CLI exits 4 (so
`--fail-on` can never pass it).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

MAX_FAILED_SHARE = 0.05


@dataclass(frozen=True)
class Measurement:
    calls: int  # distinct model calls the run needed (cache hits included)
    failed_calls: int
    baseline_items: int
    failed_baseline_items: int  # items whose baseline call failed: no variants were sent for them
    max_failed_share: float
    measured: bool
    reason: str

    def to_dict(self) -> dict:
        return asdict(self)


def assess(calls: int, failed_calls: int, baseline_items: int, failed_baseline_items: int,
           max_failed_share: float = MAX_FAILED_SHARE) -> Measurement:
    share = failed_calls / calls if calls else 0.0
    problems = []
    if failed_baseline_items:
        problems.append(f"{failed_baseline_items} of {baseline_items} baseline calls failed")
    if share > max_failed_share:
        problems.append(f"{failed_calls} of {calls} model calls failed ({share:.1%}, over the "
                        f"{max_failed_share:.0%} limit)")
    if problems:
        reason = "; ".join(problems) + ": the run could not be measured (failed calls are not wrong answers)"
    elif failed_calls:
        reason = f"{failed_calls} of {calls} model calls failed ({share:.1%}); left out of every rate"
    else:
        reason = "every model call was answered"
    return Measurement(calls, failed_calls, baseline_items, failed_baseline_items, max_failed_share, not problems, reason)
