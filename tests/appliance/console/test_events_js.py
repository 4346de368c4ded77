"""The console's event readers (static/js/events.js) render every event shape without throwing.

Runs the real module under Node with a minimal DOM; events come from tests/shapes.py (empty
elements, #attributes/#text, lists, numbers, odd System and Detection blocks).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.shapes import ELEMENT, events

JS = Path(__file__).resolve().parents[3] / "appliance" / "console" / "static" / "js"
NODE = shutil.which("node")
RUNNER = """
class Node { constructor() { this.children = []; this.dataset = {}; }
  append(...c) { this.children.push(...c); } setAttribute() {} addEventListener() {}
  replaceChildren() { this.children = []; } }
globalThis.Node = Node;
globalThis.document = { createElement: () => new Node(), createTextNode: (t) => {
  if (typeof t !== "string") throw new Error("text node of " + typeof t); return t; } };
const m = await import(process.argv[2]);
const events = JSON.parse(require("fs").readFileSync(0, "utf8"));
let n = 0;
for (const e of events) {
  for (const f of [m.eventTime, m.eventHash, m.eventId, m.eventChannel, m.signatures,
                   m.criticality, m.eventSubject, m.processGuid]) f(e);
  m.eventChannel(e).split("/"); m.signatures(e).join(", "); m.eventSubject(e).slice(0, 9);
  m.eventEndpoint(e); m.eventDetail(e);
  for (const col of [...m.detectionColumns(() => {}), ...m.eventColumns(() => {})]) col.render(e);
  n++;
}
console.log(n);
"""

pytestmark = pytest.mark.skipif(NODE is None, reason="node is not installed")


def _render(batch: list[object], tmp_path: Path) -> None:
    script = tmp_path / "run.cjs"
    script.write_text(
        "(async () => {" + RUNNER + "})().catch((e) => { console.error(e.stack);"
        " process.exit(1); });"
    )
    out = subprocess.run(
        [str(NODE), str(script), str(JS / "events.js")],
        input=json.dumps(batch),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == str(len(batch))


DETECTIONS = st.one_of(
    ELEMENT,
    st.fixed_dictionaries(
        {},
        optional={
            "Signature": st.one_of(ELEMENT, st.lists(ELEMENT, max_size=3)),
            "Criticality": ELEMENT,
        },
    ),
)


@settings(
    max_examples=5,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],  # no shrink:
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)  # a run spawns Node
@given(batch=st.lists(st.tuples(events(), DETECTIONS, ELEMENT), min_size=20, max_size=40))
def test_every_shape_renders(tmp_path: Path, batch: list[tuple[dict, object, object]]) -> None:
    shaped: list[object] = []
    for event, det, edr in batch:
        event["Event"]["Detection"] = det
        event["Event"]["EdrData"] = {"Event": edr, "Endpoint": edr}
        shaped.append(event)
    _render([*shaped, None, 3, "x", {"Event": []}], tmp_path)
