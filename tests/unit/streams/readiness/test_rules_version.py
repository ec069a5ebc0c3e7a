"""A change to the sector rules (the taxonomy table, the matcher or the learned weights) is a rule change: stored scores
must be recomputed, so RULES_VERSION must move with it (issue 15). What is digested is what the rules do: the taxonomy
table, from version 12 the learned weights (learned.json), and the matcher's strength for every concept on every
tender of the tuning set (labels.jsonl: 621 real tenders up to version 4, 719 from version 5, 814 from version 6, 938
from version 7, 1,187 from version 8, 1,444 from version 9, 1,953 from version 10, 2,709 from version 11, 3,823 from
version 14; held-out tenders added to the sample later do not move it). A refactor that keeps every strength keeps
the digest; a rule edit without a version bump fails this test."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from bench.sector_match import FIXTURES
from streams.readiness import learned, taxonomy
from streams.readiness.scoring import RULES_VERSION
from streams.readiness.sectors import tender_evidence
from streams.readiness.taxonomy import CONCEPTS

# RULES_VERSION -> rules_digest(). On a rule change: bump RULES_VERSION in streams/readiness/scoring.py and add its
# digest below (the verify command then reports the stored scores as drift until the workers have rescored them).
DIGESTS = {
    "3": "643fe4c94b1109c8d27f9a4d1d71fff89c007fbdae26ce7c846e1f09f5e4db07",
    "4": "27f6c33a9879b1ded7c95dbcbe9223f4430b62668a8c8fe941605412cb84fe2f",
    "5": "0814a48f55fac1aad0ed983d6658ca78c825f80178d1c518547cb5baf4339ff3",
    "6": "3711b2db953f7eb533aeb07ea505d42e4382c22248f0da0fc433ff1e3350e89c",
    "7": "46ad5a9c2d775ce6b617e6bb64078d392711bac8eae87cf7090b981af2111fcf",
    "8": "3b27bc2d7d13fa1a8672679b89d2360679a126caeb5ab244c6b12ba0c320c267",
    "9": "7522252c28127e5ced6286738cfd81ffce62722e673227820f2cff260caf0c92",
    "10": "bb3ac3f21d0306c9002f76a083f2ca884c583ba30717062f61df1e123cab94f5",
    "11": "dd6735c8e9c9c81e3d59b32bb7c1391de4e01acc63d9ce4a5f1857040d8f445d",
    "12": "be9b272f2f579a06d7a3623f8e6b2955771eef165f80e8a2e5b168c9b1ad935b",
    "13": "2c0919d1574ed71d63a7d8ceeec70c602defcb11e6887d389490a1e219f2129a",
    "14": "0dcc0063c0de0ec3db5a523498b929ce6fa4f480db8f9a6c083191f688048e00",
}


def rules_digest() -> str:
    digest = hashlib.sha256(Path(taxonomy.__file__).with_name("taxonomy.toml").read_bytes())
    digest.update(learned.SOURCE.read_bytes())
    tuning = {json.loads(line)["id"] for line in (FIXTURES / "labels.jsonl").read_text().splitlines()}
    for line in (FIXTURES / "sample.jsonl").read_text().splitlines():
        t = json.loads(line)
        if t["id"] not in tuning:
            continue
        evidence = tender_evidence(t["category"], t["title"], t["description"])
        digest.update(json.dumps([round(evidence.strength(c.id), 6) for c in CONCEPTS]).encode())
    return digest.hexdigest()


def test_the_rules_match_the_rules_version() -> None:
    assert RULES_VERSION in DIGESTS, f"RULES_VERSION {RULES_VERSION!r} has no recorded digest: add {rules_digest()!r}"
    assert DIGESTS[RULES_VERSION] == rules_digest(), (
        f"the sector rules changed under RULES_VERSION {RULES_VERSION!r}: bump it in streams/readiness/scoring.py "
        f"and record {rules_digest()!r} for the new version"
    )
