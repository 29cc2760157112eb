"""CLI start-up (issue #16 item 5): a command that uses no network imports none.

Each command runs in a fresh ``python`` (what the ``syndicator`` script does) against a migrated
throwaway SQLite data directory, then prints the modules it loaded. Admin autodiscovery, the
system checks, ``formats()`` for argparse choices and django-ninja as an installed app each loaded
every adapter (and twitter_text, ~0.25 s) or the API before the command ran. The time itself is
measured by bench/cli_startup.py, not asserted here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from syndicator.targets.registry import kinds

ROOT = Path(__file__).resolve().parent.parent
RUN = (
    "import json, sys\n"
    "from syndicator.cli import main\n"
    "try:\n"
    "    main(sys.argv[1:])\n"
    "except SystemExit as exc:\n"
    "    if exc.code:\n"
    "        raise\n"
    "print('\\nMODULES ' + json.dumps(sorted(sys.modules)))\n"
)
# A network's package and its heavy dependencies; the admin pages; the JSON API and its framework.
NETWORK_MODULES = ("twitter_text", "tweepy", *(f"syndicator.targets.{kind}" for kind in kinds()))
OTHER_MODULES = ("syndicator.admin", "syndicator.api", "ninja", "pydantic")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    directory = tmp_path_factory.mktemp("cli-startup")
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "DJANGO_SETTINGS_MODULE"}}
    env["SYNDICATOR_DATA_DIR"] = str(directory)
    migrate = [sys.executable, "-c", RUN, "migrate", "-v0"]
    subprocess.run(migrate, cwd=ROOT, env=env, check=True, capture_output=True)
    return env


def loaded_modules(env: dict[str, str], *args: str) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-c", RUN, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout.rsplit("\nMODULES ", 1)[1]))


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["queue", "--json"],
        ["log", "--since", "1h", "--json"],
        ["targets", "list"],
        ["feeds", "list"],
    ],
    ids=" ".join,
)
def test_a_command_that_uses_no_network_imports_no_adapter_admin_or_api(data_dir, args) -> None:
    modules = loaded_modules(data_dir, *args)
    forbidden = NETWORK_MODULES + OTHER_MODULES
    loaded = sorted(m for m in modules if any(m == f or m.startswith(f + ".") for f in forbidden))
    assert loaded == []
    assert "syndicator.models" in modules or args == ["--help"]  # the command did run


def test_a_command_that_uses_one_network_imports_that_one_alone(data_dir) -> None:
    # A dry-run target imitating Mastodon: listing it reads the outbox and Mastodon's rules only.
    add = ["targets", "add", "outbox", "--name", "dry", "--format", "mastodon"]
    loaded_modules(data_dir, *add)  # choices are still checked (every format is read then)
    modules = loaded_modules(data_dir, "targets", "list")
    networks = {m.split(".")[2] for m in modules if m.startswith("syndicator.targets.") and m.count(".") >= 2}
    assert {"twitter", "bluesky", "email"}.isdisjoint(networks)
    assert "twitter_text" not in modules
