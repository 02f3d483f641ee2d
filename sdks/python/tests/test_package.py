"""`pip wheel` produces a wheel that installs into a clean directory and imports."""

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

from ._server import SDK_DIR


class PackageTest(unittest.TestCase):
    def test_wheel_installs_and_imports(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            # Build from a copy: setuptools writes build/ and *.egg-info next
            # to the sources, and a stale build/ could leak into the wheel.
            src = os.path.join(tmp, "src")
            shutil.copytree(SDK_DIR, src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__", ".*"))
            wheels = os.path.join(tmp, "wheels")
            # With setuptools and wheel installed, build with them so that the
            # test needs no network; otherwise pip fetches them (PEP 517).
            offline = all(importlib.util.find_spec(m) for m in ("setuptools", "wheel"))
            cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", wheels, src]
            subprocess.run(cmd + (["--no-build-isolation"] if offline else []), check=True, capture_output=True)
            (wheel,) = os.listdir(wheels)
            self.assertTrue(wheel.startswith("thetazero_sdk-0.1.0-py3-none-any"), wheel)
            target = os.path.join(tmp, "site")
            subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", target, os.path.join(wheels, wheel)],
                           check=True, capture_output=True)
            self.assertTrue(os.path.exists(os.path.join(target, "thetazero", "py.typed")))
            self.assertFalse(os.path.exists(os.path.join(target, "tests")))
            out = subprocess.run(
                [sys.executable, "-I", "-c",
                 "import sys; sys.path.insert(0, %r); import thetazero; "
                 "print(thetazero.__file__.startswith(%r), thetazero.SecureAgent.permissions.CODER[0], thetazero.__version__)" % (target, target)],
                check=True, capture_output=True, text=True, cwd=tmp)
            self.assertEqual(out.stdout.split(), ["True", "compute:read", "0.1.0"])


if __name__ == "__main__":
    unittest.main()
