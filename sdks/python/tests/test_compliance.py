"""Controls mapping and evidence: the spec's calls in Python, against a real server."""

import hashlib
import io
import unittest
import zipfile

from thetazero import SecureAgent, ThetazeroError

from ._server import Server

server: Server


def setUpModule() -> None:
    global server
    server = Server()


def tearDownModule() -> None:
    server.stop()


def agent(name: str, **kwargs: object) -> SecureAgent:
    return SecureAgent(api_key=server.api_key, name=name, base_url=server.base_url, **kwargs)  # type: ignore[arg-type]


class ComplianceTest(unittest.TestCase):
    def test_the_spec_calls_in_python(self) -> None:
        a = agent("py-compliance", compliance=["eu_ai_act", "soc2", "nist_ai_rmf"])
        a.configure()  # evaluates immediately
        status = a.get_compliance_status()
        evidence = a.get_evidence_package("eu_ai_act", "markdown")
        report = a.export_compliance_report("json")

        self.assertEqual([f["id"] for f in status["frameworks"]], ["eu_ai_act", "soc2", "nist_ai_rmf"])
        self.assertEqual(status["scope"]["agent"]["id"], a.agent_id)
        self.assertIsNotNone(a.compliance_status)
        art10 = next(c for c in status["frameworks"][0]["controls"] if c["id"] == "Art. 10")
        self.assertEqual((art10["coverage"], art10["result"]), ("organizational", None))

        self.assertEqual(evidence["media_type"], "application/zip")
        self.assertEqual(evidence["sha256"], hashlib.sha256(evidence["bytes"]).hexdigest())
        self.assertIn("not a certification or compliance score", evidence["markdown"])
        with zipfile.ZipFile(io.BytesIO(evidence["bytes"])) as z:
            names = z.namelist()
        for want in ("README.md", "manifest.dsse.json", "report.json", "charts/eu_ai_act.svg", "not-covered.md"):
            self.assertIn(want, names)
        self.assertIsInstance(evidence["audit_leaf_index"], int)

        self.assertEqual(report["schema"], "thetazero.compliance-report/v1")
        self.assertEqual(len(report["catalogs"]), 3)

    def test_not_satisfied_is_a_status_and_unknown_ids_are_named(self) -> None:
        a = agent("py-full", permissions="FULL", compliance=["owasp_llm_top10"])
        record = a.deploy()
        llm06 = next(c for c in record["compliance"]["frameworks"][0]["controls"] if c["id"] == "LLM06")
        self.assertEqual(llm06["result"], "not_satisfied")
        with self.assertRaises(ThetazeroError) as e:
            a.get_evidence_package("hipaa")
        self.assertEqual(e.exception.code, "invalid_request")
        self.assertIn("hipaa", e.exception.message)
        drill = a.run_compliance_drill()
        self.assertTrue(drill["drill"]["confirmed"])
        after = a.get_compliance_status(frameworks=["eu_ai_act"])
        check = next(c for c in after["checks"] if c["id"] == "killswitch.drill")
        self.assertEqual(check["status"], "pass")


if __name__ == "__main__":
    unittest.main()
