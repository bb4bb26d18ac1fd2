"""The README is the users' manual: every command, flag, path and API name
it shows must exist, so that it cannot drift from the code.

Backend-independent: the CLI parser and the recipe are plain Python
(`flowerkit.cli` imports no Keras), so nothing here starts a backend.
"""

from __future__ import annotations

import argparse
import ast
import fnmatch
import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

import flowerkit
from flowerkit.backends.selection import installed_backends
from flowerkit.cli import COMMANDS, build_parser
from flowerkit.cli.train import recipe_from_args
from tests.helpers import COLOURS, SHARED, write_image


pytestmark = pytest.mark.backend_independent  # run once, not per backend (tox.ini)

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
MAX_LINES = 350  # issue 23: the manual, every section included

# Flags of tools other than flowerkit that the README may name inline.
OTHER_TOOLS_FLAGS = {"--benchmark-only", "--no-deps", "--index-url", "--help"}
# Written by `python -m bench.report` (bench/), not kept in this tree's history.
GENERATED_PATHS = {"bench/results/README.md"}

_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
_INLINE = re.compile(r"`([^`\n]+)`")
_ENV = re.compile(r"^[A-Z_][A-Z0-9_]*=")


def _shell_blocks() -> list[str]:
    return [body for language, body in _FENCE.findall(README) if language in ("bash", "sh")]


def _prose() -> str:
    return _FENCE.sub("", README)


def _shell_commands(block: str) -> list[list[str]]:
    """Each simple command of a shell block, as words, without leading
    environment assignments (continuations joined, comments dropped)."""
    commands = []
    for line in block.replace("\\\n", " ").splitlines():
        words, current = shlex.split(line, comments=True), []
        for word in words + ["&&"]:
            if word in ("&&", "||", ";", "|"):
                while current and _ENV.match(current[0]):
                    current.pop(0)
                if current:
                    commands.append(current)
                current = []
            else:
                current.append(word)
    return commands


def _flowerkit_argv(words: list[str]) -> list[str] | None:
    """The `flowerkit` console script's argv for a README command, or None
    when the command is another tool's (pip, tox, pytest, ...)."""
    if words[0] == "flowerkit":
        return words[1:]
    if len(words) >= 3 and words[0] in ("python", "python3") and words[1] == "-m":
        module = words[2]
        if module == "flowerkit":
            return words[3:]
        if module.startswith("flowerkit."):
            return [module.removeprefix("flowerkit."), *words[3:]]
    return None


def readme_cli_lines() -> list[list[str]]:
    return [
        argv for block in _shell_blocks() for words in _shell_commands(block)
        if (argv := _flowerkit_argv(words)) is not None
    ]


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parsers = {}
    for name, (command, _) in COMMANDS.items():
        parsers[name] = argparse.ArgumentParser(prog=f"flowerkit {name}")
        command.add_arguments(parsers[name])
    return parsers


def _options(parser: argparse.ArgumentParser) -> set[str]:
    return {option for action in parser._actions for option in action.option_strings}


def _bench_options() -> set[str]:
    """`--bench-NAME` for each key of bench/conftest.py's KNOBS (read, not
    imported: a conftest registers hooks)."""
    tree = ast.parse((ROOT / "bench/conftest.py").read_text())
    (knobs,) = [node.value for node in tree.body if isinstance(node, ast.Assign)
                and any(getattr(target, "id", None) == "KNOBS" for target in node.targets)]
    return {"--bench-" + key.value.replace("_", "-") for key in knobs.keys}


def _parse(argv: list[str]) -> argparse.Namespace:
    """Parses as `flowerkit` would; a train line also builds its recipe,
    which checks the preset and every field's value (still no backend)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:
        pytest.fail(f"`flowerkit {shlex.join(argv)}` is refused by the parser (exit {exit_.code})")
    if args.command == "train":
        recipe_from_args(args)
    return args


def test_readme_fits_its_line_budget():
    lines = README.count("\n")
    assert lines <= MAX_LINES, f"README.md has {lines} lines, over the {MAX_LINES} allowed"


def test_readme_shows_every_subcommand_in_a_runnable_line():
    shown = {argv[0] for argv in readme_cli_lines()}
    assert shown == set(COMMANDS), f"README shell lines cover {sorted(shown)}, not {sorted(COMMANDS)}"


@pytest.mark.parametrize("argv", readme_cli_lines(), ids=shlex.join)
def test_readme_cli_line_parses(argv, capsys):
    args = _parse(argv)
    assert capsys.readouterr().err == ""
    # argparse also takes unambiguous abbreviations (`--top` for `--top-k`): the manual must not.
    flags = {word.split("=")[0] for word in argv if word.startswith("--")}
    assert flags <= _options(_subparsers()[args.command]) | {"--help"}


def test_the_extraction_catches_a_flag_that_does_not_exist():
    # The check above must fail on drift, not pass on anything.
    block = "KERAS_BACKEND=jax python -m flowerkit.train --preset codelab \\\n    --no-such-flag 3\n"
    (argv,) = [_flowerkit_argv(words) for words in _shell_commands(block)]
    assert argv == ["train", "--preset", "codelab", "--no-such-flag", "3"]
    with pytest.raises(pytest.fail.Exception, match="refused by the parser"):
        _parse(argv)
    with pytest.raises(pytest.fail.Exception, match="refused by the parser"):
        _parse(["no-such-command", "runs/demo/model.keras"])
    with pytest.raises(Exception, match="no_such_preset"):
        _parse(["train", "--preset", "no_such_preset"])


def test_readme_inline_flags_exist():
    parsers = _subparsers()
    gpu_script = set(re.findall(r'= "(--[a-z-]+)"', (ROOT / "bench/gpu.sh").read_text()))
    known = set().union(*map(_options, parsers.values())) | _bench_options() | OTHER_TOOLS_FLAGS | gpu_script
    unknown = []
    for span in _INLINE.findall(_prose()):
        for flag in re.findall(r"(?<![\w-])--[a-z][a-z0-9*-]*", span):
            if not fnmatch.filter(known, flag):
                unknown.append(f"{flag} (in `{span}`)")
    assert not unknown, f"README names options that exist nowhere: {unknown}"


def test_readme_inline_flag_values_parse():
    """`--head gap`, `--top-k 3`, ...: a flag shown with a literal value is
    parsed by the subcommand that has it (placeholders like PATH skipped)."""
    positionals = {"train": [], "predict": ["m.keras", "x.jpg"], "evaluate": ["m.keras"],
                   "export": ["m.keras", "--format", "onnx"], "inspect": ["photos"], "serve": ["m.keras"]}
    checked = 0
    for span in _INLINE.findall(_prose()):
        words = span.split()
        if len(words) != 2 or not words[0].startswith("--") or re.search(r"[A-Z|*]", words[1]):
            continue
        owners = [name for name, parser in _subparsers().items() if words[0] in _options(parser)]
        for name in owners:
            _parse([name, *positionals[name], *words])
            checked += 1
    assert checked >= 10, f"only {checked} inline flag values found: has the README's style changed?"


def test_readme_paths_exist():
    mentioned = set(re.findall(r"(?<![\w/$.{])((?:flowerkit|docs|tests|bench)/[\w./-]*)", README))
    missing = sorted(
        path for path in mentioned - GENERATED_PATHS if not (ROOT / path.rstrip(".")).exists()
    )
    assert mentioned and not missing, f"README names paths that do not exist: {missing}"


def test_readme_api_names_exist():
    names = set(re.findall(r"\bflowerkit((?:\.[A-Za-z_]\w*)+)", README))
    assert names
    missing = []
    for dotted in sorted(names):
        first = dotted.split(".")[1]
        if first in flowerkit.__all__:
            continue  # a public API name (resolved on first use: no backend started here)
        if importlib.util.find_spec("flowerkit" + dotted) is None:
            missing.append("flowerkit" + dotted)
    assert not missing, f"README names flowerkit APIs that do not exist: {missing}"


@pytest.mark.parametrize("module", sorted({argv[0] for argv in readme_cli_lines()}))
def test_readme_entry_point_modules_run(module):
    """`python -m flowerkit.<name> --help` works as the README writes it."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run(
        [sys.executable, "-m", f"flowerkit.{module}", "--help"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: flowerkit {module} ")


def test_ci_runs_the_readmes_test_command():
    ci = (ROOT / ".ci/run").read_text().splitlines()
    assert "\npython3 -m pip install 'tox>=4'\n" in README
    assert "python3 -m pip install --quiet 'tox>=4'" in ci
    assert "\ntox -p all -e tf,jax,torch\n" in README and "tox -p all -e tf,jax,torch" in ci


# --- every README command, run as a newcomer would ------------------------------------

SHARED_PHOTOS = "../shared/data/flower_photos"
_SHELL_TOOLS = ("mkdir", "cp")  # the README's set-up lines that are neither pip nor a flowerkit command


def _readme_runs() -> list[tuple[dict, list[str], str]]:
    """(environment assignments, words, text) of each README command that the
    test runs: flowerkit's, and the set-up lines (`mkdir`, `cp`), in README order."""
    runs = []
    for block in _shell_blocks():
        for line in block.replace("\\\n", " ").splitlines():
            for part in re.split(r"\s&&\s", line):
                words = shlex.split(part, comments=True)
                env = {}
                while words and _ENV.match(words[0]):
                    key, _, value = words.pop(0).partition("=")
                    env[key] = value
                if words and (words[0] in _SHELL_TOOLS or _flowerkit_argv(words) is not None):
                    runs.append((env, words, part))
    return runs


def _cheap(argv: list[str], photos: Path) -> list[str]:
    """The command on a tiny photo folder, and a short training where the
    README's would take minutes; `inspect` with 2 folds; `serve` on a free port."""
    argv = [str(photos) if word in (SHARED_PHOTOS, "photos/") else word for word in argv]
    if argv[0] == "train":
        argv += ["--epochs", "1", "--fine-tune-epochs", "0", "--image-size", "32", "--batch-size", "8"]
    if argv[0] == "inspect":
        argv += ["--folds", "2"]
    if argv[0] == "serve":  # one batch shape to warm up, not six (1, 2, 4, ... 32)
        argv += ["--port", "0"] + ([] if "--max-batch" in argv else ["--max-batch", "1"])
    return argv


def _only_help(assigned: dict, argv: list[str], trained: bool) -> bool:
    """A training after the one the run is made by: its line is parsed (recipe
    included) by `test_readme_cli_line_parses`; here its entry point runs
    `--help`, without minutes of training that prove nothing more. A line
    naming a backend that is not installed still runs: its one-line exit 2."""
    backend = assigned.get("KERAS_BACKEND")
    missing = backend is not None and importlib.util.find_spec(backend) is None
    return argv[0] == "train" and trained and not missing


def _serve_until_ready(command, env, cwd) -> tuple[int, str]:
    """Starts `flowerkit serve`, waits for its ready line (or its exit), then stops it."""
    server = subprocess.Popen(command, env=env, cwd=cwd, stderr=subprocess.PIPE, text=True)
    lines = []
    try:
        for line in server.stderr:
            lines.append(line)
            if "ready: the model warmed up in" in line:
                return 0, "".join(lines)
        return server.wait(), "".join(lines)
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.skipif(not SHARED.joinpath("data/flower_photos").is_dir(),
                    reason=f"needs the shared photos and weights in {SHARED}")
def test_every_readme_command_runs_without_keras_backend(tmp_path):
    """KERAS_BACKEND unset, a fresh home with no keras.json, this environment's one
    backend, no network: each README command works or exits 2 with one line
    (a backend it names that is not here, an export this backend cannot make),
    and no command writes keras.json."""
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir(), work.mkdir()
    (tmp_path / "shared").symlink_to(SHARED)  # `../shared` from the working folder
    photos = tmp_path / "photos"  # real photos: a folder of solid colours is all duplicates, unsplittable
    for name in ("daisy", "roses", "tulips"):
        (photos / name).mkdir(parents=True)
        for path in sorted((SHARED / "data/flower_photos" / name).iterdir())[:8]:
            shutil.copy(path, photos / name / path.name)
    for name, colour in (("rose.jpg", COLOURS["red"]), ("tulip.png", COLOURS["green"])):
        write_image(work / name, colour)
    env = {key: value for key, value in os.environ.items() if key not in ("KERAS_BACKEND", "KERAS_HOME")}
    env.update(HOME=str(home), PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
               FLOWERKIT_TF_FLOWERS_URL="http://127.0.0.1:9/flower_photos.tgz")  # no network, surely
    backends, backends_chosen = installed_backends(), {}
    outcomes = {}
    for assigned, words, text in _readme_runs():
        if words[0] in _SHELL_TOOLS:
            subprocess.run(["bash", "-c", text], cwd=work, env=env, check=True)
            continue
        argv = _cheap(_flowerkit_argv(words), photos)
        if _only_help(assigned, argv, (work / "runs/demo/model.keras").is_file()):
            argv = [argv[0], "--help"]
        started = time.monotonic()
        command = [sys.executable, "-m", "flowerkit", *argv]
        if argv[0] == "serve":
            status, err = _serve_until_ready(command, {**env, **assigned}, work)
        else:
            result = subprocess.run(command, env={**env, **assigned}, cwd=work, capture_output=True,
                                    text=True, timeout=600)
            status, err = result.returncode, result.stderr
        shown = shlex.join([*(f"{k}={v}" for k, v in assigned.items()), *argv])
        assert "Traceback" not in err, f"{shown}:\n{err}"
        assert status == 0 or (status == 2 and len([l for l in err.splitlines() if "error:" in l]) == 1), \
            f"{shown} exited {status}:\n{err}"
        outcomes[shown] = status
        if chose := re.search(r"backend (\w+) \(", err):  # when nothing else chose it
            assert chose[1] in backends, f"{shown} chose {chose[1]}:\n{err}"
            if "runs/demo" in shown:  # a saved model: the backend it was trained on
                assert chose[1] == backends_chosen.setdefault("runs/demo", chose[1]), shown
        print(f"{time.monotonic() - started:6.1f} s  exit {status}  {shown}")
        assert not (home / ".keras" / "keras.json").exists(), f"{shown} wrote keras.json"
    trained = [shown for shown, status in outcomes.items() if status == 0 and " train " in f" {shown} "]
    assert trained and (work / "runs/demo/model.keras").is_file(), outcomes
    assert {"predict", "evaluate", "serve", "inspect"} <= {s.split()[0] for s, st in outcomes.items() if st == 0}, outcomes
