"""The README's main command with `--backend pipeline`: the demo's story on the local stack, act by
act (the default backend's demo runs in test_localstack_gemini)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from distillery.local import demo

pytestmark = pytest.mark.integration


@pytest.mark.timeout(900)  # two trainings, each judged on a 100-example golden set
def test_demo_promotes_a_model_then_rejects_a_worse_rerun(
    stack: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    state = stack.stack.state()
    state.save()  # what `distillery dev up` records, and the demo reads
    assert demo.run(state.state_dir, "ci-demo", backend="pipeline") == 0
    out = capsys.readouterr().out
    assert "config sidecar datasets/ci-demo.config.json: backend pipeline" in out
    assert "request body sent to pipelineJobs.create:" in out
    assert "verdict: INVALID" in out and "line 2, input_text" in out
    assert re.search(r"\[#+-*\] step \d+/\d+  loss \d\.\d{4}", out)
    promoted, rejected = re.findall(r"^\S+  (\S+)  (?:PROMOTED|REJECTED)", out, re.MULTILINE)
    assert promoted != rejected
    assert re.search(r"^   ([78])/8 correct$", out, re.MULTILINE), out
    assert "REJECTED           accuracy on the golden set: mean paired difference" in out
    assert re.search(r"paired difference -\d\.\d{4}, 95% CI -\d\.\d{4} to [-+]\d\.\d{4}", out), out
    assert f"decision report: gs://{stack.settings.bucket}/reports/decisions/{rejected}.html" in out
    assert f"champion unchanged: job {promoted}," in out
    # The step-by-step act (the teacher's LABELING stage) is the gemini backend's.
    assert (
        "7. Distilling step-by-step from an unlabeled set: skipped on the pipeline backend "
        "(the seed's pipeline labels inside its own template" in out
    )
    assert not re.search(r"^\S+  \S+  LABELING", out, re.MULTILINE), out
    assert "batch prediction job" not in out
