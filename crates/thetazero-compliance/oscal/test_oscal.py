"""The OSCAL outputs against NIST's published schemas.

Run with the Python that has the pinned validator (`.ci/requirements-oscal.txt`,
compliance-trestle, whose models are generated from NIST's OSCAL JSON
schemas) and THETAZERO_BIN pointing at the binary:

    target/oscal-venv/bin/python -m unittest discover -s crates/thetazero-compliance/oscal -v
"""

import base64
import json
import os
import subprocess
import sys
import tempfile
import unittest
import urllib.request

from trestle.oscal import OSCAL_VERSION
from trestle.oscal.assessment_plan import AssessmentPlan
from trestle.oscal.assessment_results import AssessmentResults
from trestle.oscal.component import ComponentDefinition

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "..", "sdks", "python"))
from tests._server import BIN, Server  # noqa: E402


def call(server: Server, method: str, path: str, body: object = None) -> dict:
    req = urllib.request.Request(
        server.base_url + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": "Bearer %s" % server.api_key, "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req) as res:
        return json.loads(res.read())


class OscalTest(unittest.TestCase):
    server: Server

    @classmethod
    def setUpClass(cls) -> None:
        cls.server = Server()

    @classmethod
    def tearDownClass(cls) -> None:
        cls.server.stop()

    def cli(self, *args: str) -> dict:
        env = dict(os.environ, THETAZERO_BASE_URL=self.server.base_url, THETAZERO_API_KEY=self.server.api_key)
        out = subprocess.run([BIN, "compliance", *args], env=env, capture_output=True, check=True)
        return json.loads(out.stdout)

    def test_assessment_results_validate_with_their_assessment_plan(self) -> None:
        call(self.server, "POST", "/api/v1/sdk/agents",
             {"name": "oscal-agent", "entry_code": "return 1;", "permissions": "FULL"})
        call(self.server, "POST", "/api/v1/sdk/compliance/drill")
        doc = self.cli("report", "--format", "oscal", "--out", "-")
        ar = doc["assessment-results"]
        self.assertEqual(ar["metadata"]["oscal-version"], OSCAL_VERSION, "the version the validator carries")
        model = AssessmentResults.model_validate(ar)
        result = model.results[0]
        self.assertEqual(len(result.observations), 15, "one observation per check")
        states = {f.title: getattr(f.target.status.state, "value", f.target.status.state) for f in result.findings}
        self.assertEqual(states["owasp_llm_top10 LLM06"], "not-satisfied")
        self.assertEqual(states["eu_ai_act Art. 14(4)(e)"], "satisfied")
        # The minimal assessment plan travels in back-matter, found through import-ap.
        href = ar["import-ap"]["href"]
        self.assertTrue(href.startswith("#"))
        resource = next(r for r in ar["back-matter"]["resources"] if r["uuid"] == href[1:])
        plan = json.loads(base64.b64decode(resource["base64"]["value"]))
        AssessmentPlan.model_validate(plan["assessment-plan"])

    def test_component_definition_validates(self) -> None:
        doc = self.cli("report", "--format", "oscal-component-definition", "--out", "-")
        cd = doc["component-definition"]
        self.assertEqual(cd["metadata"]["oscal-version"], OSCAL_VERSION)
        model = ComponentDefinition.model_validate(cd)
        impls = model.components[0].control_implementations
        self.assertEqual(len(impls), 5)
        ids = [r.control_id for i in impls for r in i.implemented_requirements]
        self.assertIn("eu_ai_act-art.12_1", ids)

    def test_component_definition_served_by_the_api_validates(self) -> None:
        doc = call(self.server, "GET", "/api/v1/sdk/compliance/component-definition")
        cd = doc["component-definition"]
        self.assertEqual(cd["metadata"]["oscal-version"], OSCAL_VERSION)
        model = ComponentDefinition.model_validate(cd)
        impls = model.components[0].control_implementations
        self.assertEqual(len(impls), 5)
        # The NIST AI 600-1 actions a check evidences are properties of their subcategory.
        nist = next(i for i in impls if "/nist_ai_rmf.json#" in i.source)
        actions = sorted(p.value for r in nist.implemented_requirements for p in (r.props or [])
                         if p.name == "nist-ai-600-1-action")
        self.assertEqual(actions, ["GV-1.7-001", "MS-2.7-004", "MS-2.7-009", "MS-2.8-003"])
        one = call(self.server, "GET", "/api/v1/sdk/compliance/component-definition?frameworks=soc2")
        ComponentDefinition.model_validate(one["component-definition"])

    def test_an_invalid_document_is_refused(self) -> None:
        # The validator is not vacuous: a finding with an unknown state fails.
        doc = self.cli("report", "--format", "oscal", "--out", "-", "--framework", "soc2")
        ar = doc["assessment-results"]
        ar["results"][0]["findings"][0]["target"]["status"]["state"] = "compliant"
        with self.assertRaises(Exception):
            AssessmentResults.model_validate(ar)
        ar = self.cli("report", "--format", "oscal", "--out", "-", "--framework", "soc2")["assessment-results"]
        ar["uuid"] = "not-a-uuid"
        with self.assertRaises(Exception):
            AssessmentResults.model_validate(ar)


if __name__ == "__main__":
    print("trestle OSCAL models", OSCAL_VERSION)
    unittest.main()
