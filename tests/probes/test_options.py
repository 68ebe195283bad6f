"""Audit options are a typed config: an unknown or misspelt key, or a bad value, is an error
naming it; a valid one reaches the probe it tunes."""

from __future__ import annotations

import pytest

from faithcheck.audit.pipeline import AuditConfig
from faithcheck.errors import BadInput
from faithcheck.probes import AuditOptions, ProbeContext, get_probes
from faithcheck.probes.early_answering import MAX_CUTS
from faithcheck.records import Trace
from faithcheck.tasks import get_task


@pytest.mark.parametrize("options, named", [
    ({"hint_kind": ["suggested"]}, "hint_kind"),      # misspelt key
    ({"colour": "red"}, "colour"),
    ({"hint_kinds": ["sugested"]}, "sugested"),        # misspelt value
    ({"hint_kinds": "suggested"}, "hint_kinds"),       # a string, not a list
    ({"max_cuts": 0}, "max_cuts"),
    ({"mistake_positions": "4"}, "mistake_positions"),
    ({"languages": []}, "languages"),
])
def test_bad_options_are_errors_naming_them(options, named):
    with pytest.raises(BadInput, match=named):
        AuditConfig("organism:faithful", options=options)


def test_options_reach_their_probes():
    config = AuditConfig("organism:faithful", options={"max_cuts": 2, "hint_kinds": ["metadata"], "languages": ["es"]})
    assert config.options == AuditOptions(max_cuts=2, hint_kinds=("metadata",), languages=("es",))
    assert config.options.to_dict() == {"max_cuts": 2, "hint_kinds": ["metadata"], "languages": ["es"]}
    task = get_task("modular")
    item = task.load(1, 0).items[0]
    steps = tuple(f"step {i} . " for i in range(30))
    trace = Trace(item.id, task.prompt(item), "".join(steps), steps, "3", True, "".join(steps))
    early, hints, translation = get_probes(["early_answering", "hints", "translation"])
    tuned = ProbeContext(task, 0, len, options=config.options)
    assert len(early.variants(item, trace, tuned)) == 3  # cuts at 0, 15 and 30 steps
    assert len(early.variants(item, trace, ProbeContext(task, 0, len))) == MAX_CUTS + 1
    assert {v.params["kind"] for v in hints.variants(item, trace, tuned)} <= {"metadata"}
    assert {r.lang for r in translation.rewrite_requests(item, trace, tuned)} == {"es"}
