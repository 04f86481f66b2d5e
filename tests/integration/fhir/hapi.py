"""The reference FHIR validator, for the tests: HAPI FHIR's instance validator with the FHIR R4
core definitions (hapi-fhir-validation-resources-r4), offline. Its jars come from Maven Central
once (validator/pom.xml, re-fetched when the pom changes) into .waymark/fhir-validator/, and
validator/Validate.java runs in Java's single-file source mode (so the JDK is needed:
scripts/bootstrap.sh installs it)."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).parent / "validator"
ROOT = Path(__file__).resolve().parents[3]
LIBS = ROOT / ".waymark" / "fhir-validator" / "libs"


@dataclass(frozen=True)
class Verdict:
    errors: int
    messages: list[str]


def libs() -> Path:
    pom = HERE / "pom.xml"
    digest = hashlib.sha256(pom.read_bytes()).hexdigest()
    marker = LIBS / ".pom-sha256"
    if marker.exists() and marker.read_text() == digest:
        return LIBS
    for tool in ("mvn", "java"):
        assert shutil.which(tool), f"{tool} is missing: run scripts/bootstrap.sh"
    if LIBS.exists():
        shutil.rmtree(LIBS)
    subprocess.run(
        [
            "mvn",
            "-q",
            "-B",
            "-f",
            str(pom),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={LIBS}",
        ],
        check=True,
        timeout=900,
    )
    marker.write_text(digest)
    return LIBS


def validate(files: list[Path]) -> dict[str, Verdict]:
    """The validator's verdict on each file (by path as given), in one JVM."""
    cp = f"{libs()}/*"
    run = subprocess.run(
        ["java", "-cp", cp, str(HERE / "Validate.java"), *map(str, files)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    out: dict[str, Verdict] = {}
    for line in run.stdout.splitlines():
        name, _, rest = line.partition("\t")
        count, _, messages = rest.partition("\t")
        if count.isdigit():
            out[name] = Verdict(int(count), [m for m in messages.split(" | ") if m])
    assert set(out) == {str(f) for f in files}, run.stdout[-2000:] + run.stderr[-2000:]
    return out
