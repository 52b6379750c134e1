"""The documentation names every setting the code has, and nothing it lacks."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from openai_cost_pusher.arguments import build_parser
from openai_cost_pusher.config import OPTIONS, SECRET_FILE_SUFFIX

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
ENV_EXAMPLE = (ROOT / ".env.example").read_text()


@pytest.mark.parametrize("env", [o.env for o in OPTIONS])
def test_every_setting_is_documented(env: str) -> None:
    """Each environment variable appears in the README table."""
    assert f"`{env}`" in README


@pytest.mark.parametrize("env", [o.env for o in OPTIONS])
def test_every_setting_is_in_env_example(env: str) -> None:
    """Each environment variable appears in .env.example."""
    assert re.search(rf"^#? ?{env}=", ENV_EXAMPLE, re.MULTILINE), env


@pytest.mark.parametrize("flag", [o.flag for o in OPTIONS if o.flag])
def test_every_flag_is_documented(flag: str) -> None:
    """Each command-line flag appears in the README."""
    assert f"`{flag}`" in README


@pytest.mark.parametrize("env", [o.env for o in OPTIONS if o.secret])
def test_secret_file_forms_are_documented(env: str) -> None:
    """Each secret's _FILE form is named in the README and .env.example."""
    assert env + SECRET_FILE_SUFFIX in README
    assert env + SECRET_FILE_SUFFIX in ENV_EXAMPLE


def test_env_example_names_only_real_settings() -> None:
    """.env.example sets no variable the code does not read."""
    known = {o.env for o in OPTIONS}
    known |= {o.env + SECRET_FILE_SUFFIX for o in OPTIONS if o.secret}
    named = set(re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", ENV_EXAMPLE, re.MULTILINE))
    assert named <= known, named - known


def test_verify_help_lists_its_options() -> None:
    """`verify --help` documents --days, --include-today, --all and --query-url."""
    text = build_parser(verify=True).format_help()
    for flag in ("--days", "--include-today", "--all", "--query-url", "--demo"):
        assert flag in text
