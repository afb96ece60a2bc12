"""The README and docs/*.md, checked as a reader uses them.

* every relative link and picture resolves (a file of the repository, and the heading an anchor names);
* every ``rtface ...`` and ``python -m ...`` command in their shell code blocks names a command that exists, with
  options its ``--help`` lists (each ``--help`` runs once per session, all in one subprocess that imports torch
  once);
* the README's Python snippet runs on a shipped picture and a short clip of a shipped video.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

import pytest

from .conftest import REPO, shared

README = REPO / "README.md"
DOCS = [README, *sorted((REPO / "docs").glob("*.md"))]

#: The README's two commands at its top, which the issue that shaped it fixed character for character.
TOP_COMMANDS = (
    "pip install . && rtface demo"
    + " " * 80 + "# run the demo\n"
    "pip install torch==2.13.0 && pip install -e \".[train,dev]\" --config-settings editable_mode=compat"
    " && python -m pytest -q   # run the tests\n"
)
README_MAX_LINES = 200
SHELL_LANGS = {"", "bash", "sh", "shell", "console", "zsh"}
#: Commands whose first positional argument names a subcommand with its own --help.
WITH_SUBCOMMANDS = {("rtface",), ("rtface", "bench"), ("python", "-m", "benchmarks"), ("python", "-m", "train")}
_SEPARATORS = {"&&", "||", "|", ";", "&", "(", ")", ";;", "|&"}


# ----------------------------------------------------------------------------------------------------------------
# Reading markdown

@dataclass(frozen=True)
class Block:
    """A fenced code block: the file, the line of its opening fence (1-based), its language and its text."""

    path: Path
    line: int
    lang: str
    text: str


def _split(path: Path) -> tuple[str, list[Block]]:
    """The file's prose (code blocks blanked, line numbers kept) and its fenced code blocks."""
    prose, blocks = [], []
    fence = None
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        stripped = line.strip()
        if fence is None:
            m = re.match(r"(`{3,}|~{3,})\s*([\w+-]*)", stripped)
            if m:
                fence, lang, start, body = m.group(1), m.group(2).lower(), number, []
                prose.append("")
                continue
            prose.append(line)
        else:
            prose.append("")
            if stripped.startswith(fence) and not stripped.strip(fence[0]):
                blocks.append(Block(path, start, lang, "\n".join(body)))
                fence = None
            else:
                body.append(line)
    return "\n".join(prose), blocks


_PARSED = {p: _split(p) for p in DOCS}


def _blank_inline_code(text: str) -> str:
    """Inline code spans replaced by spaces (newlines kept): a link written as code is not a link."""
    return re.sub(r"`[^`]*`", lambda m: re.sub(r"[^\n]", " ", m.group(0)), text)


_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HTML_LINK = re.compile(r"<(?:img|a)\b[^>]*?\b(?:src|href)\s*=\s*\"([^\"]+)\"", re.I)
_REF_DEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.M)


def _links(path: Path) -> list[tuple[int, str]]:
    """(line, target) of every link and picture in the file's prose."""
    prose = _blank_inline_code(_PARSED[path][0])
    found = []
    for rx in (_LINK, _HTML_LINK, _REF_DEF):
        for m in rx.finditer(prose):
            found.append((prose.count("\n", 0, m.start(1)) + 1, m.group(1)))
    return sorted(found)


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    """Every anchor a link can name in a markdown file: its headings' slugs (repeats numbered) and HTML ids."""
    prose = _PARSED[path][0] if path in _PARSED else _split(path)[0]
    seen: dict[str, int] = {}
    anchors = set()
    for m in re.finditer(r"^#{1,6}\s+(.+?)\s*#*\s*$", prose, re.M):
        slug = _slug(m.group(1))
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        anchors.add(slug if n == 0 else f"{slug}-{n}")
    anchors.update(re.findall(r"<[^>]*\b(?:id|name)\s*=\s*\"([^\"]+)\"", prose))
    return anchors


def _rel(path: Path) -> str:
    return str(path.relative_to(REPO))


# ----------------------------------------------------------------------------------------------------------------
# Links and pictures

@pytest.mark.parametrize("doc", DOCS, ids=_rel)
def test_every_relative_link_and_picture_resolves(doc: Path):
    broken = []
    for line, target in _links(doc):
        if re.match(r"[a-zA-Z][a-zA-Z0-9+.-]*:", target):  # https:, mailto: ...: not ours to check
            continue
        file_part, _, anchor = target.partition("#")
        dest = (doc.parent / unquote(file_part)).resolve() if file_part else doc
        where = f"{_rel(doc)}:{line}: {target}"
        if not dest.exists():
            broken.append(f"{where}: {dest} does not exist")
        elif anchor and dest.suffix == ".md" and unquote(anchor) not in _anchors(dest):
            broken.append(f"{where}: {dest.name} has no heading with the anchor #{anchor}")
    assert not broken, "links that do not resolve:\n" + "\n".join(broken)


def test_the_link_reader_finds_links_pictures_and_anchors(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Top: the *first* heading\n\n## Top: the *first* heading\n\n"
                    "See [a](other.md#x) and ![p](pic.png \"title\"), not `[c](code.md)`;\n"
                    "<img src=\"html.png\"> [wrapped\ntext](#top-the-first-heading-1)\n\n"
                    "```bash\n[d](in_code.md)\n```\n[ref]: ref.md\n")
    _PARSED[page] = _split(page)
    try:
        assert [t for _, t in _links(page)] == ["other.md#x", "pic.png", "html.png", "#top-the-first-heading-1",
                                                "ref.md"]
        assert _anchors(page) == {"top-the-first-heading", "top-the-first-heading-1"}
    finally:
        del _PARSED[page]


# ----------------------------------------------------------------------------------------------------------------
# Commands in code blocks

@dataclass(frozen=True)
class Use:
    """One command line of a code block: where it is, the program (``rtface`` or ``python -m MODULE``) and the
    arguments after it."""

    where: str
    program: tuple[str, ...]
    args: tuple[str, ...]


def _command_lines(block: Block) -> list[tuple[int, str]]:
    """(line, logical line) of a shell block, with backslash continuations joined and prompts dropped."""
    out, pending, first = [], "", 0
    for offset, line in enumerate(block.text.splitlines(), 1):
        if not pending:
            first = block.line + offset
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        out.append((first, re.sub(r"^\s*\$\s+", "", pending + line)))
        pending = ""
    if pending:
        out.append((first, pending))
    return out


def _uses(block: Block) -> list[Use]:
    """Every ``rtface ...`` and ``python -m MODULE ...`` command of a shell code block."""
    uses = []
    for line, text in _command_lines(block):
        lex = shlex.shlex(text, posix=True, punctuation_chars=True)
        lex.whitespace_split, lex.commenters = True, "#"
        try:
            tokens = list(lex)
        except ValueError as e:  # an unbalanced quote: the reader's shell would choke too
            raise AssertionError(f"{_rel(block.path)}:{line}: cannot be read as a shell command ({e}): {text}")
        segment: list[str] = []
        for tok in tokens + [";"]:
            if tok not in _SEPARATORS and not re.fullmatch(r"[<>]+|\d?>&?\d?", tok):
                segment.append(tok)
                continue
            while segment and re.match(r"[A-Za-z_]\w*=", segment[0]):  # VAR=value before the command
                segment.pop(0)
            where = f"{_rel(block.path)}:{line}"
            if segment and segment[0] == "rtface":
                uses.append(Use(where, ("rtface",), tuple(segment[1:])))
            elif len(segment) >= 3 and re.fullmatch(r"python(3(\.\d+)?)?", segment[0]) and segment[1] == "-m":
                uses.append(Use(where, ("python", "-m", segment[2]), tuple(segment[3:])))
            segment = []
    return uses


USES = [u for doc in DOCS for b in _PARSED[doc][1] if b.lang in SHELL_LANGS for u in _uses(b)]
PROGRAMS = sorted({u.program for u in USES})

_HELP: dict[tuple[str, ...], tuple[int, str]] = {}

#: Runs ``COMMAND --help`` for every command named in argv[1] (JSON) in this one interpreter, so that the heavy
#: imports (torch for ``train``) happen once, and prints {command: [exit code, output]} as JSON.
_HELPER = r"""
import contextlib, io, json, runpy, sys
out = {}
for command in json.loads(sys.argv[1]):
    buf, code, argv = io.StringIO(), 0, sys.argv
    try:
        with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
            if command[0] == "rtface":
                from rtface.cli import main
                code = main(command[1:] + ["--help"]) or 0
            else:
                sys.argv = [command[2]] + command[3:] + ["--help"]
                runpy.run_module(command[2], run_name="__main__", alter_sys=True)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException as e:
        code = 1
        buf.write(f"{type(e).__name__}: {e}")
    finally:
        sys.argv = argv
    out[json.dumps(command)] = [code, buf.getvalue()]
print(json.dumps(out))
"""


def _fetch_help(commands: list[tuple[str, ...]]) -> None:
    """Run ``--help`` of each command in one subprocess from the repository's root and cache the answers."""
    todo = [c for c in dict.fromkeys(commands) if c not in _HELP]
    if not todo:
        return
    argv = [sys.executable, "-c", _HELPER, json.dumps([list(c) for c in todo])]
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"the --help runner failed:\n{proc.stderr[-3000:]}"
    answers = json.loads(proc.stdout.strip().splitlines()[-1])
    for c in todo:
        code, text = answers[json.dumps(list(c))]
        _HELP[c] = (int(code), text)


def help_text(command: tuple[str, ...]) -> tuple[int, str]:
    """(exit code, output) of ``COMMAND --help``, run once per session."""
    _fetch_help([command])
    return _HELP[command]


@pytest.fixture(scope="module")
def every_help():
    """The ``--help`` of every command the code blocks name, and of their likely subcommands, fetched at once."""
    wanted = list(PROGRAMS)
    for u in USES:  # the subcommand is the first positional argument (options before it are rare)
        prefix, args = u.program, list(u.args)
        while prefix in WITH_SUBCOMMANDS:
            first = next((a for a in args if not a.startswith("-")), None)
            if first is None:
                break
            prefix, args = prefix + (first,), args[args.index(first) + 1:]
            wanted.append(prefix)
    _fetch_help(wanted)
    return _HELP


def _lists(help_out: str, option: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", help_out) is not None


def _takes_value(help_out: str, option: str) -> bool:
    """True when the help shows the option followed by a metavar or choices (``--assets DIR``, ``--x {a,b}``)."""
    return re.search(rf"(?<![\w-]){re.escape(option)}[ =](?:[A-Z][A-Z0-9_]*\b|\{{)", help_out) is not None


def _problems(command: tuple[str, ...], args: tuple[str, ...], where: str) -> list[str]:
    """What is wrong with ``COMMAND ARGS``: a command that does not exist, or an option its --help does not list."""
    code, out = help_text(command)
    name = " ".join(command)
    if code != 0:
        head = out.strip().splitlines()[-1:] or ["(no output)"]
        return [f"{where}: '{name}' does not exist: '{name} --help' exits with {code}: {head[0]}"]
    problems, i = [], 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("-") and arg != "-" and not re.fullmatch(r"-\d[\d.]*", arg):
            option = arg.split("=", 1)[0]
            if option not in {"-h", "--help"} and not _lists(out, option):
                problems.append(f"{where}: '{name} --help' does not list {option}")
            if "=" not in arg and _takes_value(out, option):
                i += 1
        elif command in WITH_SUBCOMMANDS:
            return problems + _problems(command + (arg,), args[i + 1:], where)
        i += 1
    return problems


@pytest.mark.parametrize("program", PROGRAMS, ids=" ".join)
def test_commands_in_code_blocks_exist_with_their_options(program: tuple[str, ...], every_help):
    problems = [p for u in USES if u.program == program for p in _problems(u.program, u.args, u.where)]
    assert not problems, "commands in the docs that do not work as written:\n" + "\n".join(dict.fromkeys(problems))


def test_the_command_reader_splits_lines_as_a_shell_does():
    block = Block(REPO / "README.md", 10, "bash", "\n".join([
        "pip install . && rtface demo   # the demo",
        "HOME=$(mktemp -d) RTFACE_ASSETS=/x rtface --assets DIR stream a.mp4 \\",
        "    --out b.mp4 | tee log",
        "$ python3 -m train.phase1 --steps 10 --out runs/x; echo '# not a comment'",
        "# python -m commented.out --nothing",
    ]))
    assert [(u.where, u.program, u.args) for u in _uses(block)] == [
        ("README.md:11", ("rtface",), ("demo",)),
        ("README.md:12", ("rtface",), ("--assets", "DIR", "stream", "a.mp4", "--out", "b.mp4")),
        ("README.md:14", ("python", "-m", "train.phase1"), ("--steps", "10", "--out", "runs/x")),
    ]


def test_a_missing_option_and_a_missing_command_are_reported(every_help):
    assert _problems(("rtface",), ("stream", "x.mp4", "--out", "y.mp4"), "here") == []
    assert _problems(("rtface",), ("stream", "x.mp4", "--no-such-option"), "here") == [
        "here: 'rtface stream --help' does not list --no-such-option"]
    (problem,) = _problems(("rtface",), ("no-such-command",), "here")
    assert problem.startswith("here: 'rtface no-such-command' does not exist")


# ----------------------------------------------------------------------------------------------------------------
# The README itself

def test_readme_is_short_and_keeps_its_two_commands():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; at most {README_MAX_LINES}"
    first = _PARSED[README][1][0]
    assert first.text + "\n" == TOP_COMMANDS, "the README's first code block must be the two commands, unchanged"


def _write_clip(src: Path, dst: Path, frames: int) -> None:
    """The first ``frames`` frames of a video, re-encoded (MPEG-4 Part 2, always in PyAV's FFmpeg)."""
    import av

    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        stream_in = inp.streams.video[0]
        stream = out.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = stream_in.width, stream_in.height, "yuv420p"
        for i, frame in enumerate(inp.decode(stream_in)):
            if i == frames:
                break
            image = av.VideoFrame.from_ndarray(frame.to_ndarray(format="bgr24"), format="bgr24")
            for packet in stream.encode(image):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


def test_readme_python_snippet_runs_on_a_shipped_picture(tmp_path, monkeypatch, capsys):
    snippets = [b for b in _PARSED[README][1] if b.lang == "python"]
    assert snippets, "README.md has no ```python block"
    code = snippets[0].text
    assert '"photo.jpg"' in code and '"talk.mp4"' in code, "the test gives the snippet photo.jpg and talk.mp4"
    photo = shared("faces-labeled/grace_hopper_512x512.jpg")
    video = shared("video/dafoe_1280x720.mp4")
    shared("ict-facekit/FaceXModel.tar.xz")
    shared("yunet/face_detection_yunet_2023mar.onnx")
    shutil.copy(photo, tmp_path / "photo.jpg")
    frames = 8
    _write_clip(video, tmp_path / "talk.mp4", frames)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__readme__"}
    exec(compile(code, f"README.md:{snippets[0].line + 1}", "exec"), namespace)
    result, frame = namespace["result"], namespace["frame"]
    assert len(result.faces) == 1, "Grace Hopper's portrait has one face"
    face = result.faces[0]
    assert face.mask.any() and (face.depth[face.mask] > 0).all() and face.mm_per_pixel > 0
    assert frame.index == frames - 1 and len(frame.faces) == 1 and namespace["depth"].shape == frame.image.shape[:2]
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == len(result.faces) + frames, printed
