"""Per-rule suppressions: validation, matching, hashing, removal from a detection."""

from __future__ import annotations

import json

import pytest

import rules
from rules.suppress import Suppression, SuppressionError, SuppressionSet, suppressions_sha256


def test_every_condition_must_hold() -> None:
    s = Suppression.from_dict(
        {
            "rule": "R",
            "image_prefix": "/tmp/build-",
            "parent_prefix": "/usr/bin/make",
            "command_line_regex": r"-j\d+",
            "user": "Builder",
        }
    )
    data = {
        "Image": "/tmp/build-1/cc",
        "ParentImage": "/usr/bin/make",
        "CommandLine": "cc -j4",
        "User": "builder",
    }
    assert s.matches(data)
    for key, value in [
        ("Image", "/tmp/x"),
        ("ParentImage", "/bin/sh"),
        ("CommandLine", "cc"),
        ("User", "root"),
    ]:
        assert not s.matches({**data, key: value})
    assert not s.matches({})
    win = Suppression.from_dict({"rule": "*", "image_prefix": "C:\\Windows\\Temp\\"})
    assert win.matches({"Image": "c:\\windows\\temp\\x.exe"})  # Windows paths ignore case


@pytest.mark.parametrize(
    ("doc", "msg"),
    [
        ({"image_prefix": "/tmp"}, "rule is required"),
        ({"rule": "R"}, "at least one of"),
        ({"rule": "R", "command_line_regex": "("}, "command_line_regex"),
        ({"rule": "R", "user": 3}, "user must be a string"),
        ({"rule": "R", "user": "x", "colour": "red"}, "unknown suppression field"),
    ],
)
def test_invalid_suppressions_are_refused(doc: dict, msg: str) -> None:
    with pytest.raises(SuppressionError, match=msg):
        Suppression.from_dict(doc)


def test_set_and_hash() -> None:
    a = {"rule": "A", "user": "svc"}
    b = {"rule": "*", "image_prefix": "/opt/ci/"}
    sset = SuppressionSet.from_dicts([a, b])
    assert sset.suppressed(["A", "B"], {"User": "svc", "Image": "/bin/x"}) == ["A"]
    assert sset.suppressed(["A", "B"], {"User": "x", "Image": "/opt/ci/t"}) == ["A", "B"]
    assert suppressions_sha256([a, b]) == suppressions_sha256([b, a])
    assert suppressions_sha256([a]) != suppressions_sha256([a, b])
    assert Suppression.from_dict(a).to_dict()["rule"] == "A"


def test_engine_recomputes_a_detection_without_the_suppressed_rules() -> None:
    text = "\n".join(
        json.dumps(
            {
                "Name": n,
                "Meta": {
                    "Events": {"C": [1]},
                    "Criticality": c,
                    "Schema": "2.0.0",
                    "LogType": "winevt",
                },
                "Matches": ["$a: Image ~= 'x'"],
                "Condition": "$a",
                "Actions": [a],
            }
        )
        for n, c, a in [("A", 6, "brief"), ("B", 3, "kill")]
    )
    engine = rules.Engine(rules.loads(text))
    det = engine.detection_of(["B"])
    assert det is not None and det.signatures == ("B",) and det.criticality == 3
    assert det.actions == ("kill",)
    assert engine.detection_of(["nope"]) is None
