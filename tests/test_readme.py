"""README stays honest: its commands are the ones CI runs, and its settings table is complete."""

from __future__ import annotations

import re
from pathlib import Path

from shared.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def _two_commands() -> list[str]:
    block = README.split("## Two commands", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    return [line.split("#", 1)[0].strip() for line in block.strip().splitlines()]


def test_readme_gives_exactly_two_commands_and_both_scripts_exist():
    commands = _two_commands()
    assert commands == ["bash scripts/up.sh", "bash scripts/test.sh"]
    for c in commands:
        assert (ROOT / c.split()[1]).exists()


def test_ci_runs_the_test_command_written_in_readme():
    ci = (ROOT / ".ci" / "run").read_text()
    test_command = _two_commands()[1]
    assert re.search(rf"^{re.escape(test_command)}\s*$", ci, re.M)


def test_every_setting_is_documented_in_the_readme_table():
    documented = set(re.findall(r"^\| `(WAYMARK_[A-Z_]+)` \|", README, re.M))
    expected = {f"WAYMARK_{name.upper()}" for name in Settings.model_fields}
    assert documented == expected
