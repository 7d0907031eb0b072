"""Analysis settings that suit each embedding provider's space, calibrated on the labelled pages.

scripts/calibrate.py measures them and docs/CALIBRATION.md gives the figures and the reasons.
A job can override each of them (pageperfect.models.AnalysisOptions).
"""

from __future__ import annotations

from dataclasses import dataclass

from pageperfect.analysis.coverage import CoverageModel
from pageperfect.analysis.intents import NEIGHBORS, RESOLUTION


@dataclass(frozen=True)
class ProviderDefaults:
    method: str  # how queries are grouped: "intents" (pageperfect.analysis.intents) or "dbscan"
    eps: float  # DBSCAN radius, cosine distance between query embeddings (method "dbscan")
    min_samples: int
    gap_threshold: float  # a cluster is a gap when its coverage (or best similarity) is below this
    similarity: str = "cosine"  # "evidence" (pageperfect.analysis.coverage), or analyze_gaps' "cosine"/"lexical"
    neighbors: int = NEIGHBORS  # method "intents": links per query in each view
    resolution: float = RESOLUTION  # method "intents": Louvain resolution, above 1 favours smaller groups
    coverage: CoverageModel | None = None  # similarity "evidence": the fitted weights


# Fitted and chosen on both labelled sets with all-MiniLM-L6-v2 by scripts/calibrate.py (docs/CALIBRATION.md):
# the coverage weights by logistic regression; the grouping, then the threshold and the split margin on plateaus,
# keeping the first set's F1 >= 0.95. Passages: segments, their sentences and windows of 2-3 adjacent sentences.
MINILM_COVERAGE = CoverageModel(
    semantic=1.793,
    semantic_full=1.557,
    lexical=3.028,
    bias=-3.568,
    threshold=0.5,
    split_margin=1.0,
    passages=("segment", "sentence", "window"),
)
MINILM_NEIGHBORS = 4
MINILM_RESOLUTION = 1.25

MINILM_DEFAULTS = ProviderDefaults(
    method="intents",
    eps=0.3,
    min_samples=2,
    gap_threshold=MINILM_COVERAGE.threshold,
    similarity="evidence",
    neighbors=MINILM_NEIGHBORS,
    resolution=MINILM_RESOLUTION,
    coverage=MINILM_COVERAGE,
)

PROVIDER_DEFAULTS: dict[str, ProviderDefaults] = {
    # Lexical hashing vectors know words, not meanings: DBSCAN groups near-identical wordings and
    # coverage is the share of a query's words one segment holds (calibrated on ../shared/eval).
    "hashing": ProviderDefaults(method="dbscan", eps=0.2, min_samples=2, gap_threshold=0.65, similarity="lexical"),
    "minilm": MINILM_DEFAULTS,
    # Not calibrated: the API cannot be reached from the calibration machine. The method and the
    # weights are MiniLM's; text-embedding-3-small's cosines run lower, so run scripts/calibrate.py
    # --provider openai before relying on them.
    "openai": MINILM_DEFAULTS,
}


def defaults_for(provider_name: str) -> ProviderDefaults:
    try:
        return PROVIDER_DEFAULTS[provider_name]
    except KeyError:
        raise ValueError(f"unknown embedding provider {provider_name!r}; known: {sorted(PROVIDER_DEFAULTS)}") from None
