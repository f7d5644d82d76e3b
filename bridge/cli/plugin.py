"""``carebridge plugin new NAME``: write a ready-to-install channel plugin skeleton.

Why a generator: a new channel then starts from a package that already
installs, registers, validates its section, splits and resumes sends,
verifies and hands over webhooks, and passes the core's contract suite, so
its author writes only what is specific to the platform. The templates live
in ``bridge/cli/skeleton/``; ``$name``-style placeholders are filled with
``string.Template``.
"""

from __future__ import annotations

import argparse
import keyword
import re
import runpy
from importlib import resources
from pathlib import Path
from string import Template

from bridge.cli import add_config_option
from bridge.errors import ConfigError
from bridge.schema import ChannelSchema

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
#: Names that are not platforms: the console is the core's own agent channel.
_RESERVED = frozenset({"console", "core", "bridge"})


def skeleton_files(name: str) -> dict[str, str]:
    """Map each template to the path it is written to, relative to the new project's folder."""
    package = f"carebridge_{name}"
    return {
        "pyproject.toml.tmpl": "pyproject.toml",
        "__init__.py.tmpl": f"{package}/__init__.py",
        "config.py.tmpl": f"{package}/config.py",
        "channel.py.tmpl": f"{package}/channel.py",
        "test_contract.py.tmpl": f"tests/test_{name}_contract.py",
        "README.md.tmpl": "README.md",
    }


def check_name(name: str) -> None:
    """Refuse a name that cannot be a channel, an entry point and a Python package at once.

    :raises ConfigError: saying why.
    """
    if not _NAME.match(name):
        raise ConfigError(f"plugin name {name!r}: use lower-case letters, digits and '_', starting with a letter")
    if keyword.iskeyword(name) or name in _RESERVED:
        raise ConfigError(f"plugin name {name!r} is reserved; choose the platform's name")


def write_skeleton(name: str, parent: Path) -> Path:
    """Write the project ``carebridge-<name>`` (``_`` written ``-``) under ``parent``; return its folder.

    :raises ConfigError: for a bad name, an existing folder or a write error.
    """
    check_name(name)
    from bridge import __version__

    words = name.split("_")
    target = parent / f"carebridge-{'-'.join(words)}"
    if target.exists() or target.is_symlink():
        raise ConfigError(f"{target} already exists; refusing to overwrite it")
    values = {
        "name": name,
        "package": f"carebridge_{name}",
        "dist": target.name,
        "Class": "".join(word.capitalize() for word in words),
        "label": " ".join(word.capitalize() for word in words),
        "core_version": __version__,
    }
    templates = resources.files("bridge.cli").joinpath("skeleton")
    try:
        target.mkdir(parents=True)
        for template, relative in skeleton_files(name).items():
            if template == "README.md.tmpl":
                continue  # it shows the section, read from the generated schema below
            _write(target / relative, Template(templates.joinpath(template).read_text(encoding="utf-8")), values)
        (target / values["package"] / "py.typed").touch()
        schema = runpy.run_path(str(target / values["package"] / "config.py"))["SCHEMA"]
        if not isinstance(schema, ChannelSchema):
            raise ConfigError("the skeleton's config.py declares no ChannelSchema")  # a broken template
        readme = Template(templates.joinpath("README.md.tmpl").read_text(encoding="utf-8"))
        _write(target / "README.md", readme, {**values, "section": schema.template()})
    except OSError as err:
        raise ConfigError(f"{target}: cannot write: {err.strerror}") from err
    return target


def _write(path: Path, template: Template, values: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(template.substitute(values), encoding="utf-8")


def run_new(args: argparse.Namespace) -> int:
    """Entry of ``carebridge plugin new``."""
    target = write_skeleton(args.name, Path(args.dir))
    package = f"carebridge_{args.name}"
    print(f"wrote {target}/: pyproject.toml, README.md, {package}/ (channel, config schema), tests/")
    print("next:")
    print(f"  pip install -e '{target}[test]'   # then: carebridge plugins --check")
    print(f"  pytest {target}                   # the contract suite, against a fake of the platform")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``plugin new``."""
    parser = sub.add_parser("plugin", help="tools for plugin authors")
    actions = parser.add_subparsers(dest="plugin_command", metavar="ACTION")
    actions.required = True
    new = actions.add_parser("new", help="write a ready-to-install channel plugin skeleton")
    new.add_argument("name", metavar="NAME", help="the channel's name (its [channels.NAME] section), e.g. acme")
    new.add_argument("--dir", default=".", help="where to create carebridge-NAME/ (default: .)")
    add_config_option(new)
    new.set_defaults(func=run_new)
