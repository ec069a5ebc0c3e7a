"""A change to the sector rules (the taxonomy table or the matcher) is a rule change: stored scores must be recomputed,
so RULES_VERSION must move with it (issue 15). The digest of the rule files is recorded per version here; a rule edit
without a version bump fails this test."""

from __future__ import annotations

import hashlib
from pathlib import Path

from streams.readiness import sectors, taxonomy
from streams.readiness.scoring import RULES_VERSION

RULE_FILES = (Path(taxonomy.__file__).with_name("taxonomy.toml"), Path(sectors.__file__))
# RULES_VERSION -> sha256 over the rule files (in RULE_FILES order). On a rule change: bump RULES_VERSION in
# streams/readiness/scoring.py and add its digest below (the verify command then reports the stored scores as drift
# until the workers have rescored them).
DIGESTS = {
    "3": "811d22e5785339f9752422b1f7dc694faec74daf450f1d8a49f5556e3573c062",
}


def rules_digest() -> str:
    digest = hashlib.sha256()
    for path in RULE_FILES:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def test_the_rule_files_match_the_rules_version() -> None:
    assert RULES_VERSION in DIGESTS, f"RULES_VERSION {RULES_VERSION!r} has no recorded digest: add {rules_digest()!r}"
    assert DIGESTS[RULES_VERSION] == rules_digest(), (
        f"the sector rules changed under RULES_VERSION {RULES_VERSION!r}: bump it in streams/readiness/scoring.py "
        f"and record {rules_digest()!r} for the new version"
    )
