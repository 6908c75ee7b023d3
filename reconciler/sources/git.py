"""Desired state from git objects at a resolved commit: trees and blobs, no working tree.

The only module that imports GitPython. A local repository is read in place
(``git ls-tree`` and ``cat-file``, never a checkout, so a user's working tree
is never touched); a remote one (``file://``, ``https://``, ``ssh://`` or
``user@host:path``) is mirrored into Grove's data folder and fetched with a
bounded timeout. Any other transport, such as ``ext::``, is refused, and git
itself is told to refuse it too (``GIT_ALLOW_PROTOCOL``). URLs are redacted of
credentials in every message, and credentials in an ``https://`` URL never
reach a file: git gets them in its environment (see :func:`split_credentials`).
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import datetime as dt
import hashlib
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import git
from git.exc import GitCommandError, InvalidGitRepositoryError, NoSuchPathError

from reconciler.base import childenv, diagnostics, errors
from reconciler.base.diagnostics import Diagnostic
from reconciler.manifests import addresses
from reconciler.manifests.loading import Limits
from reconciler.sources import Delta, Entry, Listing
from reconciler.sources.folder import SUFFIXES

ALLOWED_SCHEMES = ("file", "https", "ssh")
_SCP_LIKE = re.compile(r"^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:(?!//)")
_SHA = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")
MODE_SYMLINK = "120000"
MODE_SUBMODULE = "160000"


_HIDDEN = ("", "")  # _admit's answer for an entry a listing skips without a word


def _admit(relative: str, mode: str, kind: str) -> tuple[str, str] | None:
    """Whether a listing shows a tree entry (path relative to the manifests folder):
    None when it does, :data:`_HIDDEN` when it skips it, else the (code, message) of
    the problem it reports (a submodule, a symbolic link)."""
    parts = relative.split("/")
    if any(part.startswith(".") for part in parts[:-1]):
        return _HIDDEN
    if mode == MODE_SUBMODULE:
        return ("F009", "submodules are not read; commit the manifests themselves")
    if mode == MODE_SYMLINK:
        return ("F003", "symbolic links are not followed; commit the file itself")
    if not relative.endswith(SUFFIXES) or parts[-1].startswith(".") or kind != "blob":
        return _HIDDEN
    return None


def is_remote(location: str) -> bool:
    return "://" in location or "::" in location or bool(_SCP_LIKE.match(location))


def check_url(location: str) -> None:
    """Refuse transports other than file, https and ssh (``ext::`` runs commands)."""
    if _SCP_LIKE.match(location):
        return
    scheme = location.split("://", 1)[0].lower() if "://" in location else ""
    if scheme not in ALLOWED_SCHEMES:
        shown = addresses.redact_userinfo(location)
        raise errors.SourceError(
            f"repository {shown!r}: only file://, https:// and ssh:// remotes are allowed"
        )


def split_credentials(location: str) -> tuple[str, dict[str, str]]:
    """An ``https://user:password@host/...`` URL without its credentials, and them as
    git environment.

    git writes a clone's URL into the clone's config file, so credentials in it would
    sit on disk in Grove's data folder. Instead each git command gets them as an
    ``Authorization`` header through the environment (``GIT_CONFIG_COUNT``, git 2.31
    or later), and does not follow redirects, so the header goes to that host only.
    Other URLs come back unchanged (an ``ssh://`` user name is not a secret).
    """
    if not location.lower().startswith("https://"):
        return location, {}
    parts = urlsplit(location)
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if not at:
        return location, {}
    user, _, password = userinfo.partition(":")
    token = base64.b64encode(f"{unquote(user)}:{unquote(password)}".encode()).decode()
    return urlunsplit(parts._replace(netloc=hostport)), {
        "GIT_CONFIG_COUNT": "2",
        "GIT_CONFIG_KEY_0": "http.extraHeader",
        "GIT_CONFIG_VALUE_0": f"Authorization: Basic {token}",
        "GIT_CONFIG_KEY_1": "http.followRedirects",
        "GIT_CONFIG_VALUE_1": "false",
    }


def _stderr_detail(stderr: bytes | str, status: object) -> str:
    """The line of git's stderr that says what went wrong (its first fatal: or error:
    line, else the first line), credentials redacted."""
    text = stderr.decode("utf-8", "replace") if isinstance(stderr, bytes) else stderr
    lines = [
        line.strip().removeprefix("stderr:").strip(" '")
        for line in text.splitlines()
        if line.strip()
    ]
    fatal = [line for line in lines if line.startswith(("fatal:", "error:", "ERROR:"))]
    return addresses.redact_userinfo((fatal or lines or [f"exit {status}"])[0])


# git's automatic gc runs detached by default, and its pruning of empty object folders
# races the next command's object writes ("unable to create temporary file"); in the
# foreground it finishes before the command that triggered it returns.
_GIT = ("git", "-c", "gc.autoDetach=false")

# Set for every git command, whatever the server's environment says.
_FIXED = {
    "GIT_ALLOW_PROTOCOL": "file:https:ssh",
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_ASKPASS": "/bin/false",
    "SSH_ASKPASS": "/bin/false",
    "LC_ALL": "C",
    "LANGUAGE": "C",
}


def _environment(timeout_s: int, credentials: Mapping[str, str] | None = None) -> dict[str, str]:
    """A git command's whole environment: the allow-list of :mod:`childenv`, never a copy
    of the server's (which holds the provider API keys), and git's safety settings."""
    bounded = str(min(timeout_s, 30))
    return childenv.build(
        childenv.GIT,
        {
            **_FIXED,
            "GIT_SSH_COMMAND": f"ssh -o BatchMode=yes -o ConnectTimeout={bounded}",
            "GIT_HTTP_LOW_SPEED_LIMIT": "1000",
            "GIT_HTTP_LOW_SPEED_TIME": bounded,
            **(credentials or {}),
        },
    )


def _run(
    command: Sequence[str],
    cwd: str | os.PathLike[str] | None,
    env: dict[str, str],
    timeout_s: float | None,
) -> tuple[int, bytes, bytes]:
    """Run a git command to its end: exit status, stdout, stderr. Its own session, so that
    a timeout ends it with whatever it started (ssh, a remote helper)."""
    with subprocess.Popen(
        list(command),
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    ) as process:
        try:
            out, err = process.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            out, err = process.communicate()
            return -9, out, err + f"\nfatal: timed out after {timeout_s:g} s".encode()
    return process.returncode, out, err


# The options of GitPython's execute that the commands Grove runs through it use.
_EXECUTE_OPTIONS = frozenset(
    {
        "as_process",
        "istream",
        "env",
        "kill_after_timeout",
        "strip_newline_in_stdout",
        "with_exceptions",
        "with_extended_output",
    }
)


class _Git(git.Git):
    """GitPython's command runner, with Grove's environment instead of a copy of the
    server's.

    GitPython builds every command's environment from ``os.environ`` (its ``execute``
    adds the ``env`` it is given to a copy), so the provider API keys would reach every
    git process, the long-lived ``cat-file --batch`` ones that read blobs included.
    This runner starts the processes itself, with :func:`_environment` only.
    """

    def execute(self, command: Any, *args: Any, **kwargs: Any) -> Any:
        unknown = set(kwargs) - _EXECUTE_OPTIONS
        if args or unknown:  # fail loudly rather than run a command differently than asked
            raise TypeError(f"_Git.execute does not take {sorted(unknown) or args}")
        env = _environment(30, {**self._environment, **(kwargs.get("env") or {})})
        argv = [str(part) for part in command]
        cwd = self._working_dir
        if kwargs.get("as_process"):  # a persistent command: it lives as long as the Repo
            process = subprocess.Popen(
                argv,
                cwd=cwd,
                env=env,
                stdin=kwargs.get("istream") or subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
            )
            return self.AutoInterrupt(process, argv)
        status, out, err = _run(argv, cwd, env, kwargs.get("kill_after_timeout"))
        text = out.decode("utf-8", "surrogateescape")
        if kwargs.get("strip_newline_in_stdout", True):
            text = text.removesuffix("\n")
        if status != 0 and kwargs.get("with_exceptions", True):
            raise GitCommandError(argv, status, err, out)
        if kwargs.get("with_extended_output"):
            return status, text, err.decode("utf-8", "replace")
        return text


class _Repo(git.Repo):
    GitCommandWrapperType = _Git


@dataclasses.dataclass(frozen=True, slots=True)
class Commit:
    sha: str
    subject: str
    author: str
    time: dt.datetime


class GitSource:
    """A git repository, local or mirrored from a remote."""

    def __init__(
        self, location: str, *, data_dir: str, limits: Limits, timeout_s: int = 60
    ) -> None:
        self.location = location
        self.limits = limits
        self.timeout_s = timeout_s
        self.remote = is_remote(location)
        self._url, self._credentials = split_credentials(location)
        if self.remote:
            check_url(location)
            # keyed by the URL without credentials: a new token reuses the mirror
            digest = hashlib.sha256(self._url.encode()).hexdigest()[:16]
            self.path = Path(data_dir).resolve() / "sources" / digest
        else:
            self.path = Path(location)
        self._repo: git.Repo | None = None

    @property
    def description(self) -> str:
        return addresses.redact_userinfo(self.location)

    # ---------------------------------------------------------------- plumbing

    def _git(self, *args: str, cwd: Path | None = None) -> str:
        env = _environment(self.timeout_s, self._credentials)
        status, out, err = _run([*_GIT, *args], cwd or self.path, env, self.timeout_s)
        if status != 0:
            raise self._wrap(err, status, args[0])
        return out.decode("utf-8", "surrogateescape")

    def _wrap(self, stderr: bytes, status: int, action: str) -> errors.GroveError:
        detail = _stderr_detail(stderr, status)
        message = f"git {action} failed for {self.description}: {detail}"
        if action in ("clone", "fetch"):
            return errors.SourceUnavailable(message)
        return errors.SourceError(message)

    def repo(self) -> git.Repo:
        if self._repo is None:
            try:
                # Only the default "." looks upwards (grove run from a subfolder of the
                # fleet repository); an explicit path must be the repository itself.
                upwards = not self.remote and self.location in (".", "./")
                self._repo = _Repo(self.path, search_parent_directories=upwards)
            except (InvalidGitRepositoryError, NoSuchPathError):
                raise errors.SourceError(
                    f"{self.description} is not a git repository"
                    + (" (not fetched yet)" if self.remote else "")
                ) from None
            if not self.remote and self._repo.working_tree_dir:
                self.path = Path(self._repo.working_tree_dir)
        return self._repo

    # ---------------------------------------------------------------- Source

    def fetch(self) -> None:
        if not self.remote:
            return
        if (self.path / "HEAD").is_file():
            self._git("fetch", "--prune", "--quiet", "origin")
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self._credentials:  # earlier builds named the mirror after the full URL and kept
            # the credentials in its config: remove that copy (mirrors are disposable)
            old = hashlib.sha256(self.location.encode()).hexdigest()[:16]
            shutil.rmtree(self.path.parent / old, ignore_errors=True)
        partial = self.path.with_name(self.path.name + ".partial")
        if partial.exists():
            shutil.rmtree(partial)
        self._git(
            "clone", "--mirror", "--quiet", "--", self._url, str(partial), cwd=self.path.parent
        )
        partial.rename(self.path)
        self._repo = None

    def resolve(self, ref: str) -> str:
        repo = self.repo()
        try:
            sha = repo.git.rev_parse("--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}")
        except GitCommandError:
            raise errors.SourceError(f"ref {ref!r} not found in {self.description}") from None
        if not _SHA.match(sha):
            raise errors.SourceError(f"ref {ref!r} in {self.description} is not a commit")
        return str(sha)

    def tree(self, revision: str, path: str) -> str | None:
        folder = path.strip("/")
        try:
            found = self.repo().git.rev_parse(
                "--verify", "--quiet", f"{revision}:{folder}" if folder else f"{revision}^{{tree}}"
            )
        except GitCommandError:
            return None
        return str(found)

    def list(self, revision: str, path: str) -> Listing:
        repo = self.repo()
        folder = path.strip("/")
        tree = self.tree(revision, path)
        if tree is None:
            return Listing(revision, None, ())  # no such folder at this revision: empty
        output = repo.git.ls_tree(
            "-r", "-z", "-l", "--full-tree", revision, "--", f"{folder}/" if folder else "."
        )
        entries: list[Entry] = []
        problems: list[Diagnostic] = []
        for record in output.split("\0"):
            if not record:
                continue
            info, name = record.split("\t", 1)
            mode, kind, blob, size = info.split()
            relative = name[len(folder) + 1 :] if folder else name
            verdict = _admit(relative, mode, kind)
            if verdict is _HIDDEN:
                continue
            if verdict is not None:  # refused whatever its name, as `grove validate` does
                problems.append(diagnostics.error(name, 1, *verdict))
                continue
            entries.append(Entry(name, blob, int(size) if size.isdigit() else 0))
        return Listing(revision, str(tree), tuple(entries), tuple(problems))

    def delta(self, old_tree: str, new_tree: str, path: str) -> Delta | None:
        """``git diff-tree`` of the two folder trees: git skips equal subtrees, so the
        cost follows the change, not the fleet."""
        if not (_SHA.match(old_tree) and _SHA.match(new_tree)):
            return None
        folder = path.strip("/")
        try:
            output = self.repo().git.diff_tree(
                "-r", "-z", "--raw", "--no-renames", "--no-abbrev", old_tree, new_tree
            )
        except GitCommandError:
            return None  # an old tree this repository no longer has
        records = output.split("\0")
        paths: list[str] = []
        entries: list[Entry] = []
        for info, relative in zip(records[0::2], records[1::2], strict=False):
            if not info:
                continue
            old_mode, new_mode, _, blob, status = info.lstrip(":").split()
            name = f"{folder}/{relative}" if folder else relative
            present = not status.startswith("D")
            kinds = [(new_mode, "commit" if new_mode == MODE_SUBMODULE else "blob")] * present
            if not status.startswith("A"):
                kinds.append((old_mode, "commit" if old_mode == MODE_SUBMODULE else "blob"))
            verdicts = [_admit(relative, mode, kind) for mode, kind in kinds]
            if any(v is not None and v is not _HIDDEN for v in verdicts):
                return None  # a refused entry: the full listing reports it
            if all(v is _HIDDEN for v in verdicts):
                continue
            paths.append(name)
            if present and verdicts[0] is None:
                entries.append(Entry(name, blob, -1))
        return Delta(tuple(paths), tuple(entries))

    def read(self, entry: Entry) -> bytes:
        stream = self.repo().odb.stream(bytes.fromhex(entry.blob))
        data: bytes = stream.read(self.limits.max_file_bytes + 1)
        return data

    def is_ancestor(self, old: str, new: str) -> bool | None:
        repo = self.repo()
        try:
            repo.git.merge_base("--is-ancestor", old, new)
        except GitCommandError:
            return False
        return True

    def shares_history(self, old: str, new: str) -> bool | None:
        try:  # exit 1: no common ancestor; 128: old is not a commit of this repository
            self.repo().git.merge_base(old, new)
        except GitCommandError:
            return False
        return True

    def commit(self, revision: str) -> Commit | None:
        """The subject, author and time of ``revision`` (None when it is not a commit here):
        the console's revision header."""
        try:
            out = self.repo().git.log("-1", "--format=%H%x00%s%x00%an%x00%ct", revision, "--")
        except GitCommandError:
            return None
        parts = str(out).split("\x00")
        if len(parts) != 4 or not parts[3].strip().isdigit():
            return None
        when = dt.datetime.fromtimestamp(int(parts[3]), dt.UTC)
        return Commit(parts[0], parts[1][:200], parts[2][:100], when)

    def count_between(self, old: str, new: str) -> int | None:
        """How many commits ``new`` has that ``old`` does not ("3 commits behind")."""
        try:
            return int(self.repo().git.rev_list("--count", f"{old}..{new}", "--"))
        except (GitCommandError, ValueError):
            return None

    def close(self) -> None:
        """End the persistent ``cat-file`` processes (waited for, never left as zombies,
        as they were when ``grove up`` replaced itself with the server)."""
        if self._repo is not None:
            self._repo.close()
            self._repo = None


class WorkTree:
    """Grove's own clone of the fleet repository, where API writes become commits.

    Never the user's working tree: a clone under Grove's data folder, reset to
    the remote branch before every change and pushed after it. A push that the
    remote rejects because it moved returns False, and the caller redoes its
    change on the new head. A change for review is pushed to a branch of its own
    instead (:meth:`push_branch`), made from the same tip.
    """

    def __init__(self, remote: str, path: Path, *, timeout_s: int = 60) -> None:
        if is_remote(remote):
            check_url(remote)
            self.remote, self._credentials = split_credentials(remote)
        else:
            self.remote, self._credentials = str(Path(remote).resolve()), {}
        self.path = path.resolve()
        self.timeout_s = timeout_s
        self.branch = ""

    @property
    def description(self) -> str:
        return addresses.redact_userinfo(self.remote)

    def _git(
        self, *args: str, cwd: Path | None = None, check: bool = True, stderr: bool = False
    ) -> tuple[int, str]:
        """Run git in the work tree: its status and stdout (and stderr after it, if told)."""
        env = _environment(self.timeout_s, self._credentials)
        status, out, err = _run([*_GIT, *args], cwd or self.path, env, self.timeout_s)
        if check and status != 0:
            detail = _stderr_detail(err, status)
            raise errors.SourceUnavailable(f"git {args[0]} failed in {self.description}: {detail}")
        text = out.decode("utf-8", "surrogateescape").removesuffix("\n")
        if stderr:
            text += "\n" + err.decode("utf-8", "surrogateescape").removesuffix("\n")
        return status, text

    def prepare(self) -> None:
        """A clean work tree at the tip of the remote branch."""
        if not (self.path / ".git").exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._git("clone", "--quiet", "--", self.remote, str(self.path), cwd=self.path.parent)
        elif not self.branch:  # first use: a clone by an older Grove may keep credentials
            self._git("remote", "set-url", "origin", self.remote)  # in its URL; once is enough
        self._git("fetch", "--quiet", "--prune", "origin")
        if not self.branch:
            _, out = self._git("symbolic-ref", "--short", "refs/remotes/origin/HEAD", check=False)
            self.branch = out.strip().removeprefix("origin/") or "main"
        # --force: the index and the files as the branch tip has them, whatever a failed
        # change left (what ``reset --hard`` after the checkout did, one process fewer)
        self._git("checkout", "--quiet", "--force", "-B", self.branch, f"origin/{self.branch}")
        self._git("clean", "--quiet", "-fdx")

    def discard(self) -> None:
        self._git("reset", "--quiet", "--hard", "HEAD")
        self._git("clean", "--quiet", "-fdx")

    def commit(self, message: str, *, author: str, email: str) -> str | None:
        """Commit everything changed; None when nothing changed."""
        self._git("add", "--all")
        status, _ = self._git("diff", "--cached", "--quiet", check=False)
        if status == 0:
            return None
        self._git(
            "-c",
            f"user.name={author}",
            "-c",
            f"user.email={email}",
            "commit",
            "--quiet",
            "--no-verify",
            # the caller is the author even when GIT_AUTHOR_NAME is set for the process
            f"--author={author} <{email}>",
            "-m",
            message,
        )
        return self.head()

    def push(self) -> bool:
        """Push to the remote branch; False when the remote moved (fetch and redo)."""
        status, report = self._git(
            "push",
            "--quiet",
            "--porcelain",
            "origin",
            f"HEAD:refs/heads/{self.branch}",
            check=False,
            stderr=True,
        )
        if status == 0:
            return True
        refused = "[remote rejected]" in report and not any(
            race in report  # a concurrent push won the ref: that is "the remote moved"
            for race in ("failed to update ref", "cannot lock ref", "failed to lock")
        )
        if not refused:  # not refused by the remote's own rules
            _, out = self._git("ls-remote", "origin", f"refs/heads/{self.branch}", check=False)
            if out.split() and out.split()[0] != self.head():
                return False  # rejected: the remote moved
        reason = re.search(r"\[remote rejected\] \(([^)\n]*)\)", report)
        # what a hook printed (``remote: ...`` lines): the remote's own words, bounded
        hook = "; ".join(
            line.removeprefix("remote:").strip()
            for line in report.splitlines()
            if line.startswith("remote:") and line.removeprefix("remote:").strip()
        )[:300]
        said = ""
        if reason:
            said = f" (the remote said: {addresses.redact_userinfo(reason.group(1))}"
            said += f": {addresses.redact_userinfo(hook)})" if hook else ")"
        advice = (
            "; if it is a working tree with the branch checked out, point GROVE_REPO at a "
            "bare repository or a remote instead"
            if reason is None or "checked out" in reason.group(1)
            else ""
        )
        raise errors.SourceUnavailable(f"git push to {self.description} failed{said}{advice}")

    def push_branch(self, name: str) -> None:
        """Push HEAD to a new branch ``name`` of the remote, for review: the branch the
        work tree follows is left as the remote has it. Never forced, so an existing
        branch of that name with other commits is left alone (an error)."""
        status, _ = self._git("check-ref-format", f"refs/heads/{name}", check=False)
        if status != 0:
            raise errors.SourceError(f"{name!r} is not a valid git branch name")
        self._git("push", "--quiet", "origin", f"HEAD:refs/heads/{name}")

    def head(self) -> str:
        _, out = self._git("rev-parse", "HEAD")
        return out.strip()

    def file_history(self, relative: str, *, limit: int) -> list[str]:
        """The newest ``limit`` commits of the branch that changed ``relative``, newest
        first (first parents); git stops reading history there."""
        _, out = self._git(
            "log", "--first-parent", f"--max-count={limit}", "--format=%H", "--", relative
        )
        return [line for line in out.split() if _SHA.match(line)]

    def file_at(self, commit: str, relative: str) -> str | None:
        """The text of ``relative`` at ``commit``, or None when it did not exist there."""
        status, out = self._git("show", f"{commit}:{relative}", check=False)
        return out if status == 0 else None

    def parents(self, commit: str) -> list[str]:
        _, out = self._git("rev-list", "--parents", "-n", "1", commit)
        return out.split()[1:]

    def subject(self, commit: str) -> str:
        _, out = self._git("log", "-1", "--format=%s", commit)
        return out

    def changed_files(self, commit: str) -> list[str]:
        """Paths ``commit`` changed against its first parent (renames as two paths)."""
        _, out = self._git(
            "diff-tree", "--no-commit-id", "--name-only", "-r", "-z", "--no-renames", commit
        )
        return [path for path in out.split("\0") if path]

    def revert(self, commit: str) -> bool:
        """Stage the revert of ``commit`` in the work tree (not committed); False, with the
        work tree as it was, when it does not apply cleanly."""
        status, _ = self._git("revert", "--no-commit", "--no-edit", commit, check=False)
        if status != 0:
            self._git("revert", "--abort", check=False)
            self.discard()
            return False
        return True

    def staged_diff(self) -> str:
        """The unified diff of every change in the work tree against HEAD."""
        self._git("add", "--all")
        _, out = self._git("diff", "--cached", "--no-color", "--no-ext-diff", "HEAD")
        return out
