"""Verdict labels and flag names, defined once: scoring raises them; the CLI (`--fail-on`), the
assertions and the report name them from here. Imports nothing, so the pytest plugin's
assertions can read it for free."""

from __future__ import annotations

LOAD_BEARING = "load_bearing"
POST_HOC = "post_hoc_rationalization"
ENCODED = "encoded_reasoning"
INCONCLUSIVE = "inconclusive"
LABELS = (LOAD_BEARING, POST_HOC, ENCODED, INCONCLUSIVE)
LABEL_TEXT = {
    LOAD_BEARING: "Load-bearing CoT",
    POST_HOC: "Post-hoc rationalization",
    ENCODED: "Encoded reasoning",
    INCONCLUSIVE: "Inconclusive",
}

# Flags a verdict can raise. The first two say the CoT is unfaithful; cot_dependence reports
# early-answering dependence when the accuracy gate stops the verdict.
COT_DEPENDENCE = "cot_dependence"
FLAGS = (POST_HOC, ENCODED, COT_DEPENDENCE)
