"""The report as JUnit XML for CI test views: one test case per gate check (primary metric) and
per guardrail; a FAIL or INCONCLUSIVE check, and a blocking guardrail that alarmed, is a failure
carrying its reason. A run reported alone has one case per metric and one for its requests.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from harness.compare.verdict_kind import Verdict
from harness.report.report_json import ReportDocument
from harness.runs.gate_record import render_guardrail, render_metric

# Characters XML 1.0 cannot hold at all, even escaped: data holding them is written without them.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _clean(text: str) -> str:
    return _NOT_XML.sub("\ufffd", text)


def render_junit(document: ReportDocument) -> str:
    run = document.run
    suites = ET.Element("testsuites", name=_clean(f"evalbatch {run.suite}"))
    suite = ET.SubElement(suites, "testsuite", name=_clean(f"evalbatch.{run.suite}"),
                          timestamp=document.generated_at, hostname="evalbatch")
    properties = ET.SubElement(suite, "properties")
    for name, value in (("run_id", run.run_id), ("prompt", f"{run.prompt}@{run.prompt_version}"),
                        ("prompt_fingerprint", run.prompt_fingerprint), ("model", run.model),
                        ("verdict", str(document.gate.verdict) if document.gate else "")):
        ET.SubElement(properties, "property", name=name, value=_clean(value))
    if document.gate is not None:
        _gate_cases(suite, document)
    else:
        _run_cases(suite, document)
    cases = suite.findall("testcase")
    suite.set("tests", str(len(cases)))
    suite.set("failures", str(sum(1 for case in cases if case.find("failure") is not None)))
    suite.set("errors", "0")
    suite.set("skipped", "0")
    suites.set("tests", suite.get("tests", "0"))
    suites.set("failures", suite.get("failures", "0"))
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"


def _case(suite: ET.Element, classname: str, name: str) -> ET.Element:
    return ET.SubElement(suite, "testcase", classname=_clean(classname), name=_clean(name), time="0")


def _gate_cases(suite: ET.Element, document: ReportDocument) -> None:
    gate = document.gate
    assert gate is not None
    prefix = f"evalbatch.{document.run.suite}.gate"
    for reason in gate.metrics:
        case = _case(suite, prefix, f"{reason.metric} (slice {reason.slice})")
        text = _clean(render_metric(reason))
        if reason.verdict in (Verdict.FAIL, Verdict.INCONCLUSIVE):
            failure = ET.SubElement(case, "failure", message=text, type=str(reason.verdict))
            failure.text = text
        else:
            ET.SubElement(case, "system-out").text = text
    for check in gate.guardrails:
        case = _case(suite, f"{prefix}.guardrail", check.name)
        if check.alarmed and check.blocking:
            text = _clean(render_guardrail(check))
            failure = ET.SubElement(case, "failure", message=text, type="guardrail")
            failure.text = text
        elif check.alarmed:
            ET.SubElement(case, "system-out").text = _clean(render_guardrail(check))
    if gate.verdict in (Verdict.FAIL, Verdict.INCONCLUSIVE) and not any(
            m.verdict in (Verdict.FAIL, Verdict.INCONCLUSIVE) for m in gate.metrics):
        # A verdict held back for a reason outside the checks (an unfinished run): still a failure.
        case = _case(suite, prefix, "verdict")
        text = _clean("; ".join(gate.reasons) or str(gate.verdict))
        failure = ET.SubElement(case, "failure", message=text, type=str(gate.verdict))
        failure.text = text
    warnings = gate.warnings
    if warnings:
        ET.SubElement(suite, "system-out").text = _clean("\n".join(warnings))


def _run_cases(suite: ET.Element, document: ReportDocument) -> None:
    run = document.run
    prefix = f"evalbatch.{run.suite}.run"
    for row in run.scores:
        case = _case(suite, prefix, row.metric)
        ci = "" if row.ci_low is None or row.ci_high is None else f", 95% CI [{row.ci_low:.3f}, {row.ci_high:.3f}]"
        mean = "n/a" if row.mean is None else f"{row.mean:.3f}"
        ET.SubElement(case, "system-out").text = _clean(f"{row.metric}: mean {mean} over {row.n} items{ci}")
    case = _case(suite, prefix, "requests")
    metrics = run.metrics
    if metrics is not None and metrics.failed_terminal:
        text = f"{metrics.failed_terminal} of {metrics.submitted} requests failed terminally"
        failure = ET.SubElement(case, "failure", message=text, type="failed_requests")
        failure.text = text
