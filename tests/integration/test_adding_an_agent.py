"""docs/adding-an-agent.md, followed literally: its files are written into a temporary folder as the doc gives them,
and its `bash run` blocks are run there, in order, in a virtualenv of their own that sees the project's packages (so
that installing the new agent leaves the project's virtualenv untouched). The new agent's own tests run against the
real stores through `streams.testing.AgentHarness`, and the registry finds it through its entry point."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

from schema.settings import Settings

DOC = Path(__file__).resolve().parents[2] / "docs" / "adding-an-agent.md"
BLOCK = re.compile(r"^```(?P<info>[^\n]*)\n(?P<body>.*?)^```$", re.DOTALL | re.MULTILINE)


def blocks() -> list[tuple[str, str]]:
    return [(m["info"].strip(), m["body"]) for m in BLOCK.finditer(DOC.read_text())]


def test_the_doc_gives_the_agent_its_test_and_its_packaging_and_commands_to_run() -> None:
    infos = [info for info, _ in blocks()]
    files = [info.split("file=", 1)[1] for info in infos if "file=" in info]
    assert files == ["closing_soon.py", "test_closing_soon.py", "pyproject.toml"]
    assert sum(info == "bash run" for info in infos) == 2


def test_a_new_agent_in_a_folder_of_its_own_is_tested_and_registered_as_the_doc_says(
    tmp_path: Path, settings: Settings
) -> None:
    folder = tmp_path / "closing-soon"
    folder.mkdir()
    # A virtualenv of its own on top of the project's packages: `pip install -e .` goes there.
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    site = next((venv / "lib").glob("python3*/site-packages"))
    (site / "tenderhub_project.pth").write_text(f"import site; site.addsitedir({sysconfig.get_paths()['purelib']!r})\n")
    env = {
        **os.environ,
        "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "VIRTUAL_ENV": str(venv),
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        # The doc exports the stack's env file (`set -a && . .stack/tenderhub.env`); the same settings here.
        **_exported(settings),
    }
    outputs = []
    for info, body in blocks():
        if "file=" in info:
            (folder / info.split("file=", 1)[1]).write_text(body)
        elif info == "bash run":
            done = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", body],
                cwd=folder,
                env=env,
                capture_output=True,
                text=True,
                timeout=600,
            )
            assert done.returncode == 0, f"{body}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
            outputs.append(done.stdout)
    assert re.search(r"\b3 passed\b", outputs[0]), outputs[0]
    assert outputs[1].strip().splitlines()[-1] == (
        "tender events -> alerts:closing_soon, each tender's closing date and status"
    )


def _exported(settings: Settings) -> dict[str, str]:
    env_file = Path(os.environ.get("TENDERHUB_ENV_FILE", ".stack/tenderhub.env")).resolve()
    out = {}
    for line in env_file.read_text().splitlines():
        name, sep, value = line.partition("=")
        if sep and name.strip() and not name.lstrip().startswith("#"):
            out[name.strip()] = value.strip().strip("'\"")
    assert out, f"no settings in {env_file}"
    return out
