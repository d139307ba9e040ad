"""Check a file a stage reads against the md5 that DVC itself recorded for it.

DVC trusts its cache: a damaged (read-only) cache object goes through ``dvc checkout``, ``dvc status``
and ``dvc repro`` unnoticed, and ``dvc fetch`` / ``dvc pull`` do not replace an object that exists.
So every stage input under a DVC output is checked here before it is used:

* the record is the ``outs`` entry of the output that holds the file: in ``dvc.lock`` the entry of the
  stage that *produced* it (rewritten when that stage finished, so it is current while a later stage of
  the same ``dvc repro`` runs; a stage's own ``deps`` entries are not used, they are stale until it
  finishes), or the ``<output>.dvc`` file beside a ``dvc add``-ed output;
* a file output: the md5 of its bytes must be the recorded one;
* a directory output: its listing md5, computed as DVC does (:func:`listing_md5`), must equal the recorded
  ``<md5>.dir``. No cache lookup is needed; only on a mismatch is the cache's ``.dir`` listing read, to name
  the file that differs and to tell a damaged cache object from a damaged workspace file.

A path under no recorded output (no ``dvc.yaml`` above it, or not an output of the repository) has
nothing to check, nor has an output of the stage that `dvc repro` is running (``DVC_STAGE``). Entries with a
legacy DVC 2 hash (no ``hash: md5``) are not checked (DVC hashed text files with CRLF -> LF there). The
repository root is the nearest folder above the file holding ``dvc.yaml``. Results are remembered per process,
keyed by the files' size and mtime.

Every mismatch is one :class:`DataError` naming the file and the commands that restore it. :func:`changed_params`
tells the params whose values changed since a stage last ran (its outputs computed with others).
"""

from __future__ import annotations

import configparser
import functools
import hashlib
import json
import os
from pathlib import Path

from labelbench.data.files import DataError, file_hash, load_yaml

_verified: dict[tuple[str, str], tuple] = {}  # (output, recorded md5) -> stat signature when it matched


def dir_listing(folder: Path) -> list[dict[str, str]]:
    """DVC's listing of a directory: ``[{"md5", "relpath"}]`` of every file under it, sorted by relpath."""
    entries = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if d not in (".git", ".dvc")]
        for name in filenames:
            path = Path(dirpath, name)
            entries.append({"md5": file_hash(path), "relpath": path.relative_to(folder).as_posix()})
    return sorted(entries, key=lambda e: e["relpath"])


def listing_md5(entries: list[dict[str, str]]) -> str:
    """The ``<md5>.dir`` hash DVC records for a directory with this listing (:func:`dir_listing`): the md5 of
    its ``json.dumps(..., sort_keys=True)``, as ``dvc_data.hashfile.tree.Tree.as_bytes``."""
    payload = json.dumps([{"md5": e["md5"], "relpath": e["relpath"]} for e in entries], sort_keys=True)
    return hashlib.md5(payload.encode("utf-8")).hexdigest() + ".dir"


def lock_outputs(root: Path) -> list[dict]:
    """Every ``outs`` entry of ``<root>/dvc.lock`` as {path (absolute), md5, hash, stage, record}."""
    lock = root / "dvc.lock"
    try:
        stat = lock.stat()
    except FileNotFoundError:
        return []
    return _lock_outputs(lock, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=1)  # the last dvc.lock read, while its mtime and size are unchanged
def _lock_outputs(lock: Path, mtime_ns: int, size: int) -> list[dict]:
    return [{"path": lock.parent / out["path"], "md5": out.get("md5"), "hash": out.get("hash"), "stage": stage,
             "record": f"dvc.lock (outs of stage '{stage}')"} for stage, entry in read_lock(lock.parent).items()
            for out in _outs(entry, lock, lock.parent, f"stage {stage!r}: ")]


def read_lock(root: Path) -> dict:
    """The ``stages`` mapping of ``<root>/dvc.lock``, stage name -> entry (empty without the file)."""
    lock = root / "dvc.lock"
    data = (load_yaml(lock) or {}) if lock.is_file() else {}
    stages = (data.get("stages") if isinstance(data, dict) else data) or {}
    if not isinstance(stages, dict):
        raise DataError(lock, "not in DVC's dvc.lock format (`stages` is not a mapping); restore it with "
                              "`git checkout -- dvc.lock`")
    return stages


def _outs(entry, record: Path, root: Path, where: str = "") -> list[dict]:
    """The ``outs`` entries of a dvc.lock stage or a .dvc file ``entry``, each a mapping with a ``path``; DataError
    naming ``record`` (in repository ``root``) otherwise."""
    outs = (entry.get("outs") or []) if isinstance(entry, dict) else None
    if not isinstance(outs, list) or not all(isinstance(out, dict) and isinstance(out.get("path"), str) for out in outs):
        kind = "dvc.lock" if record.name == "dvc.lock" else ".dvc"
        raise DataError(record, f"not in DVC's {kind} format ({where}each `outs` entry needs a `path`); restore it "
                                f"with `git checkout -- {record.relative_to(root).as_posix()}`")
    return outs


def dvcfile_output(root: Path, path: Path) -> dict | None:
    """The out of a ``<output>.dvc`` file beside ``path`` or beside a folder above it (up to ``root``)."""
    for candidate in (path, *path.parents):
        if candidate == root or root not in candidate.parents:
            return None
        dvcfile = candidate.with_name(candidate.name + ".dvc")
        if dvcfile.is_file():
            for out in _outs(load_yaml(dvcfile), dvcfile, root):
                if Path(os.path.normpath(dvcfile.parent / out["path"])) == candidate:
                    return {"path": candidate, "md5": out.get("md5"), "hash": out.get("hash"), "stage": None,
                            "record": dvcfile.relative_to(root).as_posix()}
    return None


def recorded_output(path: os.PathLike | str) -> tuple[Path, dict] | None:
    """(repository root, the recorded output holding ``path``), or None when no output holds it."""
    path = Path(os.path.abspath(path))  # normalised, symlinks kept (as DVC sees the workspace)
    root = next((f for f in (path, *path.parents) if (f / "dvc.yaml").is_file()), None)  # nearest holding dvc.yaml
    if root is None:
        return None
    holding = [o for o in lock_outputs(root) if o["path"] == path or o["path"] in path.parents]
    if holding:
        return root, max(holding, key=lambda o: len(o["path"].parts))
    out = dvcfile_output(root, path)
    return (root, out) if out is not None else None


def verify(path: os.PathLike | str) -> None:
    """DataError unless the DVC output holding ``path`` (a file or folder) has the bytes DVC recorded.

    For a folder output the whole output is checked (once per process while its files are unchanged).
    Nothing happens for a path under no recorded output."""
    found = recorded_output(path)
    if found is None:
        return
    root, out = found
    if out["hash"] != "md5" or not out["md5"]:
        return  # legacy (md5-dos2unix) or never-hashed entry: nothing this module can compare
    if out["stage"] is not None and out["stage"] == os.environ.get("DVC_STAGE"):
        return  # the running stage's own output: dvc.lock records it only once the stage finishes
    target = out["path"]
    if not target.exists():
        raise _error(target, f"missing, though {out['record']} records it; {_restore(root, out)}")
    signature = _signature(target)
    if _verified.get((str(target), out["md5"])) == signature:
        return
    if out["md5"].endswith(".dir"):
        _verify_dir(root, out)
    else:
        got = file_hash(target)
        if got != out["md5"]:
            raise _error(target, _problem(root, out, got, out["md5"]))
    _verified[(str(target), out["md5"])] = signature


def changed_params(stage: str, root: Path = Path(".")) -> list[str]:
    """``key: <recorded> in dvc.lock, <now> in params.yaml`` for each param of ``stage`` whose value is not the one
    dvc.lock recorded when the stage last ran (so its outputs are of other params); none without such a record."""
    import reprlib

    entry = read_lock(root).get(stage)
    recorded = ((entry or {}).get("params") or {}).get("params.yaml") if isinstance(entry, dict) else None
    if not isinstance(recorded, dict):
        return []
    params, changed = load_yaml(root / "params.yaml") or {}, []
    for key, old in recorded.items():
        now = params
        for part in key.split("."):  # DVC records a nested key as `block.key`
            now = now.get(part) if isinstance(now, dict) else None
        if now != old:
            changed.append(f"{key}: {reprlib.repr(old)} in dvc.lock, {reprlib.repr(now)} in params.yaml")
    return changed


def _signature(target: Path) -> tuple:
    """(path, size, mtime) of every file of the output ``target``, sorted: equal while its files are unchanged."""
    paths = [target] if target.is_file() else [Path(d, name) for d, _, names in os.walk(target) for name in names]
    return tuple(sorted((str(p), s.st_size, s.st_mtime_ns) for p in paths for s in [p.stat()]))


def _verify_dir(root: Path, out: dict) -> None:
    target = out["path"]
    entries = dir_listing(target)
    if listing_md5(entries) == out["md5"]:
        return
    recorded = _cached_listing(root, out["md5"])
    if recorded is None:
        raise _error(target, (
            f"its files are not the ones {out['record']} records ({out['md5']}), and the listing that would "
            f"name the file is not in the cache (`dvc fetch` brings it); {_restore(root, out)}"))
    want = {e["relpath"]: e["md5"] for e in recorded}
    have = {e["relpath"]: e["md5"] for e in entries}
    changed = sorted(r for r in want.keys() & have.keys() if want[r] != have[r])
    missing = sorted(want.keys() - have.keys())
    extra = sorted(have.keys() - want.keys())
    others = len(changed) + len(missing) + len(extra) - 1
    more = f" ({others} more file(s) of {target.relative_to(root).as_posix()} differ too)" if others else ""
    if changed:
        rel = changed[0]
        raise _error(target / rel, _problem(root, out, have[rel], want[rel]) + more)
    if missing:
        raise _error(target / missing[0], f"missing, though {out['record']} records it in {out['md5']}; "
                                             f"{_restore(root, out)}{more}")
    raise _error(target / extra[0], f"not in the listing {out['md5']} that {out['record']} records for "
                                       f"{target.relative_to(root).as_posix()}; {_restore(root, out)}{more}")


def _error(path: Path, problem: str) -> DataError:
    return DataError(path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path, problem)


def cache_object(root: Path, md5: str) -> Path:
    """Object ``md5`` of the DVC cache: ``cache.dir`` of .dvc/config.local, else of .dvc/config, else .dvc/cache."""
    config = configparser.ConfigParser(interpolation=None)
    config.read([root / ".dvc" / "config", root / ".dvc" / "config.local"], encoding="utf-8")  # local wins
    value = config.get("cache", "dir", fallback=None)
    cache = (root / ".dvc" / os.path.expanduser(value)).resolve() if value else root / ".dvc" / "cache"
    return cache / "files" / "md5" / md5[:2] / md5[2:]


def _cached_listing(root: Path, md5: str) -> list[dict] | None:
    path = cache_object(root, md5)
    try:
        listing = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(listing, list) or any(not isinstance(e, dict) or not {"relpath", "md5"} <= e.keys()
                                            for e in listing):
        return None
    return listing


def _problem(root: Path, out: dict, got: str, want: str) -> str:
    where = f"{out['record']} records md5 {want}" + (
        f" for it in {out['md5']}" if out["md5"].endswith(".dir") else "")
    obj = cache_object(root, want)
    if obj.is_file() and file_hash(obj) != want:
        rel = os.path.relpath(obj, Path.cwd())
        source = (f"`dvc repro -f {out['stage']}`" if out["stage"] is not None
                  else f"`dvc fetch {out['record']}`")
        return (f"not the bytes DVC recorded (md5 {got}; {where}), and the cache object {rel} holding it is "
                f"damaged (DVC trusts its cache: `dvc checkout`, `dvc fetch` and `dvc pull` keep it). Restore: "
                f"`rm -f {rel}`, then {source}, then `dvc checkout --force {_rel(root, out)}`")
    return f"not the bytes DVC recorded (md5 {got}; {where}); {_restore(root, out)}"


def _restore(root: Path, out: dict) -> str:
    target = _rel(root, out)
    if out["stage"] is None:
        return f"restore it with `dvc fetch {out['record']}` and `dvc checkout --force {target}`"
    return (f"restore it with `dvc checkout --force {target}` (after `dvc fetch {out['stage']}` if it is not "
            f"in the cache), or rebuild it with `dvc repro -f {out['stage']}`; if you produced it outside "
            "dvc, run it through `dvc repro` instead")


def _rel(root: Path, out: dict) -> str:
    return out["path"].relative_to(root).as_posix()
