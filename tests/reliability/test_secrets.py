"""A planted HF token must appear in no output stream and no file the commands produced."""

from __future__ import annotations

import random
import string
from pathlib import Path

from harness import TINY, copy_workdir, slscale
from hub_stub import HubStub


def token() -> str:
    return "hf_" + "".join(random.choices(string.ascii_letters, k=34))


def test_the_token_appears_nowhere(workdir: Path, generated: Path, hub: HubStub) -> None:
    copy_workdir(generated, workdir)
    in_env, in_dotenv = token(), token()
    (workdir / ".env").write_text(f"HF_TOKEN={in_dotenv}\nHF_USER_ID=tester\n")
    env = {"HF_TOKEN": in_env, "WANDB_MODE": "offline"}
    outputs = []

    def run(*args: str, expect: int | None = 0, **extra: str) -> None:
        result = slscale(*args, env={**env, **extra})
        outputs.append(result.stdout + result.stderr)
        assert expect is None or result.code == expect, result.output

    run("gen", "--size", TINY, "--animal", "eagle", "--n", "8", "--engine", "hf", "--max-new-tokens", "24")
    run("filter", "--size", TINY, "--animal", "eagle", expect=None)  # 8 rows may keep none: fine here
    run("train", "--size", TINY, "--animal", "dog", "--epochs", "1", "--samples", "10", "--no-push")
    hub.fail_next(1, 401, matching="/commit/")  # a refused upload, with the traceback asked for
    run("push", expect=None, SLSCALE_DEBUG="1")
    assert "Traceback" in outputs[-1]
    run("push")
    run("status")
    run("status", "--json")

    assert list(workdir.rglob("wandb/offline-run-*")), "W&B offline files were not written"
    secrets = (in_env, in_dotenv)
    for text in outputs:
        assert not any(secret in text for secret in secrets)
    files = [path for path in workdir.rglob("*") if path.is_file() and path.name != ".env"]
    for path in files:
        data = path.read_bytes()
        assert not any(secret.encode() in data for secret in secrets), f"token found in {path}"
    for repo in hub.repos.values():
        for name, data in repo.files.items():
            assert not any(secret.encode() in data for secret in secrets), f"token in {repo.repo_id}/{name}"
    gitignore = Path(__file__).parents[2] / ".gitignore"
    assert ".env" in gitignore.read_text().splitlines()
