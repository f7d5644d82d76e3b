"""``carebridge plugin new``: the skeleton installs, is found, passes the contract suite, and the suite has teeth.

The generated project is not pip-installed (too slow, and global to the test
environment): its folder goes on ``PYTHONPATH`` beside a ``*.dist-info``
holding its entry point, which is exactly what discovery reads after a
``pip install``. Its own tests run with pytest in a subprocess, as its author
would run them.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
import tomllib
from pathlib import Path

import pytest

from bridge.cli.plugin import write_skeleton
from bridge.errors import ConfigError
from tests.conftest import install_plugin
from tests.daemon import run_cli_sync, write_config


def site_with(project: Path, name: str) -> Path:
    """A site folder with the dist-info ``pip install`` would write for the generated project."""
    site = project.parent / f"site-{name}"
    install_plugin(site, f"carebridge-{name}", "0.1.0", {name: f"carebridge_{name}"}, {})
    return site


def env_for(project: Path, site: Path) -> dict[str, str]:
    return {"PYTHONPATH": os.pathsep.join([str(project), str(site)])}


async def run_generated_tests(*projects: Path) -> tuple[int, str]:
    """Run the projects' tests as their author would (pytest with the project's settings); return status and output.

    Several projects run in one pytest process (with the first one's settings; they are all alike).
    """
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(p) for p in projects)}
    env.pop("CAREBRIDGE_CONFIG", None)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pytest", "-q", "-rfs", "-p", "no:cacheprovider",
        "-c", str(projects[0] / "pyproject.toml"), "--rootdir", str(projects[0].parent),
        *(str(p / "tests") for p in projects),
        cwd=projects[0], env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace")


def failed_tests(output: str) -> dict[str, set[str]]:
    """The failed contract tests by project (channel name)."""
    failed: dict[str, set[str]] = {}
    for project, test in re.findall(r"^FAILED \S*test_(\w+)_contract\.py::Test\w+::(test_\w+)", output, re.MULTILINE):
        failed.setdefault(project, set()).add(test)
    return failed


def test_the_skeleton_has_every_part_and_names_itself_consistently(tmp_path: Path) -> None:
    status, out, err = run_cli_sync("plugin", "new", "acme_chat", "--dir", str(tmp_path))
    assert status == 0, err
    project = tmp_path / "carebridge-acme-chat"
    assert f"wrote {project}/" in out and "pip install -e" in out
    files = sorted(str(p.relative_to(project)) for p in project.rglob("*") if p.is_file())
    assert files == [
        "README.md", "carebridge_acme_chat/__init__.py", "carebridge_acme_chat/channel.py",
        "carebridge_acme_chat/config.py", "carebridge_acme_chat/py.typed", "pyproject.toml",
        "tests/test_acme_chat_contract.py",
    ]  # fmt: skip
    pyproject = tomllib.loads((project / "pyproject.toml").read_text())
    assert pyproject["project"]["name"] == "carebridge-acme-chat"
    assert pyproject["project"]["entry-points"]["carebridge"] == {"acme_chat": "carebridge_acme_chat"}
    assert pyproject["project"]["optional-dependencies"]["test"][0].startswith("carebridge[testing]")
    channel = (project / "carebridge_acme_chat" / "channel.py").read_text()
    assert 'CHANNEL = "acme_chat"' in channel and "class AcmeChatChannel(Channel):" in channel
    assert 'label: ClassVar[str] = "Acme Chat"' in channel
    readme = (project / "README.md").read_text()
    assert "[channels.acme_chat]\nenabled = false\n" in readme and 'api_token = "env:ACME_CHAT_API_TOKEN"' in readme
    assert "$" not in readme + channel  # every placeholder was filled


@pytest.mark.parametrize(
    ("name", "reason"),
    [("Acme", "lower-case"), ("1chat", "lower-case"), ("acme-chat", "lower-case"), ("class", "reserved"),
     ("console", "reserved")],
)  # fmt: skip
def test_names_that_cannot_be_a_channel_are_refused(tmp_path: Path, name: str, reason: str) -> None:
    with pytest.raises(ConfigError, match=reason):
        write_skeleton(name, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_an_existing_folder_is_never_overwritten(tmp_path: Path) -> None:
    (tmp_path / "carebridge-acme").mkdir()
    (tmp_path / "carebridge-acme" / "keep.txt").write_text("mine")
    status, _, err = run_cli_sync("plugin", "new", "acme", "--dir", str(tmp_path))
    assert status == 1 and "already exists; refusing to overwrite it" in err
    assert [p.name for p in (tmp_path / "carebridge-acme").iterdir()] == ["keep.txt"]


async def test_the_generated_plugin_is_found_checked_configured_and_passes_its_contract_tests(
    tmp_path: Path,
) -> None:
    project = write_skeleton("acme", tmp_path)
    site = site_with(project, "acme")
    env = env_for(project, site)

    status, out, err = run_cli_sync("plugins", "--check", env=env)
    assert status == 0, out + err
    assert "acme (carebridge-acme 0.1.0): channels: acme; hooks: register_channels" in out
    assert "no problems found" in out

    status, out, err = run_cli_sync("init", str(tmp_path / "etc"), env=env)
    assert status == 0, err
    written = (tmp_path / "etc" / "bridge.toml").read_text()
    assert "# Acme (plugin carebridge-acme).\n[channels.acme]\nenabled = false\n" in written

    config = write_config(
        tmp_path, "[channels.acme]\napi_token = 'tok'\nwebhook_secret = 'sec'\napi_url = 'ftp://nowhere'\n"
    )
    status, _, err = run_cli_sync("check-config", "-c", str(config), env=env)
    assert status == 1 and "channels.acme.api_url: expected an http(s) URL" in err

    status, output = await run_generated_tests(project)
    assert status == 0, output
    assert "14 passed" in output


# Each break of the contract, and the contract tests that must catch it (and only those).
BREAKS = {
    "no_resume": (
        "done = self._partial.accepted(message.delivery_id, message.text)",
        "done: list[str] = []",
        {"test_a_retried_delivery_resumes_after_the_failed_part"},
    ),
    "ids_per_message": (
        "done.append(await self._post_message(payload))",
        'done.append(f"{index}:{len(await self._post_message(payload))}")',
        {"test_receipt_ids_are_unique_across_recipients", "test_an_inbound_reply_quotes_a_receipt_id"},
    ),
    "store_failure_acknowledged": (
        "failed = await hand_over(self.ctx, [message], [])",
        "failed = None if await hand_over(self.ctx, [message], []) else None",
        {"test_a_failed_store_makes_the_platform_deliver_again"},
    ),
    "simulate_unsigned": (
        'headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(body, settings.webhook_secret)}',
        'headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(body, "another secret")}',
        # Its own webhook refuses it, so the store-failure test's request never gets in either.
        {"test_simulate_passes_the_channels_own_verification", "test_a_failed_store_makes_the_platform_deliver_again"},
    ),
    "reply_id_rewritten": (
        "reply_to=str(quoted) if quoted else None,",
        'reply_to=f"quote-{quoted}" if quoted else None,',
        {"test_an_inbound_reply_quotes_a_receipt_id"},
    ),
    "unnamed_config_error": (
        "    def __init__(self, config: Mapping[str, Any], ctx: ChannelContext) -> None:",
        "    @classmethod\n"
        "    def check_config(cls, section: Mapping[str, Any]) -> None:\n"
        "        if 'api_token' not in section or 'webhook_secret' not in section:\n"
        "            raise ValueError('token missing')\n"
        "        super().check_config(section)\n\n"
        "    def __init__(self, config: Mapping[str, Any], ctx: ChannelContext) -> None:",
        {"test_each_required_key_is_named_when_missing"},
    ),
}


async def test_the_contract_suite_catches_each_break_of_the_contract(tmp_path: Path) -> None:
    projects = []
    for name, (old, new, _) in BREAKS.items():
        project = write_skeleton(name, tmp_path / "breaks")
        channel = project / f"carebridge_{name}" / "channel.py"
        source = channel.read_text()
        assert source.count(old) == 1, f"{name}: the skeleton changed; update the break"
        channel.write_text(source.replace(old, new))
        projects.append(project)
    status, output = await run_generated_tests(*projects)
    assert status == 1, output
    assert failed_tests(output) == {name: expected for name, (_, _, expected) in BREAKS.items()}, output
