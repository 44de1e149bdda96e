"""The student edition: the lessons without their solutions, ready to hand out.

``energy-flows student DIR`` (or ``make student``, into ``student-edition/``)
writes every lesson of ``notebooks/`` (found as ``energy-flows lab`` finds them:
:func:`energy_flows.lab.lessons_dir`) into ``DIR``, changed in three ways:

* the solution cells are gone: the cells tagged ``solution`` that follow each
  exercise (markdown cells holding the solution, collapsed, in a fenced code
  block; in JupyterLab: the cell's property inspector, *Cell Tags*);
* every output and execution count is cleared, so no answer shows in what a
  cell printed; so is the notebook's saved widget state (``widgets`` in its
  metadata), which is what the widgets in those outputs displayed;
* nothing else: the text, the exercise cells with their checks, the cells'
  ids and metadata, and the lessons' other files (data, images) stay as they are.

``DIR`` gets a small record of what was written, ``.energy-flows-student.json``.
Writing again into a previous edition replaces it: the lessons are
rewritten, a lesson gone from ``notebooks/`` is removed, and whatever else is
in ``DIR`` (a ``.git`` folder, a README of the hand-out repository) is left alone.
Any other folder that is not empty is refused, unless ``--force`` is given;
even then only files with the lessons' names are replaced. Nothing that this
command did not write is ever deleted.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from energy_flows.errors import EnergyFlowsError
from energy_flows.lessons import WRITTEN_BY_LESSONS

#: The cell tag that marks a solution (the cell the student edition drops, whatever its type).
SOLUTION_TAG = "solution"
#: The cell tag that marks an exercise (kept: the student fills it in).
EXERCISE_TAG = "exercise"
#: The record a student edition keeps of the files it wrote (name -> sha256).
RECORD_NAME = ".energy-flows-student.json"
#: Notebook metadata that is saved output rather than part of the lesson:
#: the state of the widgets its outputs displayed.
OUTPUT_METADATA = ("widgets",)
#: Folders of the lessons' folder that are never part of a lesson.
_SKIPPED_FOLDERS = ("__pycache__",)


@dataclass
class Edition:
    """What :func:`write_student_edition` wrote (``lessons``: file name -> solution cells removed)."""

    folder: Path
    lessons: dict[str, int] = field(default_factory=dict)
    companions: list[str] = field(default_factory=list)
    removed_stale: list[str] = field(default_factory=list)
    kept_changed: list[str] = field(default_factory=list)

    @property
    def solutions_removed(self) -> int:
        """How many solution cells the edition left out, over all lessons."""
        return sum(self.lessons.values())

    def summary(self) -> list[str]:
        """The lines ``energy-flows student`` prints."""
        lines = [f"Wrote the student edition of {len(self.lessons)} lessons to {self.folder}:"]
        for name, removed in self.lessons.items():
            note = (
                f"{removed} solution cell{'s' if removed != 1 else ''} removed" if removed else ""
            )
            lines.append(f"  {name}  {note}".rstrip())
        if self.companions:
            lines.append(f"  and the lessons' files: {', '.join(self.companions)}")
        for name in self.removed_stale:
            lines.append(f"  removed {name} (written by the previous edition; no lesson now)")
        for name in self.kept_changed:
            lines.append(f"  kept {name} (no lesson now, but changed since the previous edition)")
        lines.append(
            f"{self.solutions_removed} solution cells removed; every output cleared. "
            "Ready to hand out."
        )
        return lines


def is_solution(cell: Any) -> bool:
    """Whether ``cell`` is a solution cell: tagged ``solution`` in its metadata."""
    return SOLUTION_TAG in cell.get("metadata", {}).get("tags", [])


def strip_solutions(notebook: Any) -> tuple[Any, int]:
    """A copy of ``notebook`` for students, and how many solution cells it left out.

    ``notebook`` is an nbformat 4 notebook (``nbformat.read(path, as_version=4)``).
    The copy has no solution cells (:func:`is_solution`), no outputs and no
    execution counts, and no saved widget state (:data:`OUTPUT_METADATA`);
    every other cell, and all other metadata, is kept as it is.
    """
    student = copy.deepcopy(notebook)
    kept = [cell for cell in student.cells if not is_solution(cell)]
    removed = len(student.cells) - len(kept)
    for cell in kept:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    student.cells = kept
    for key in OUTPUT_METADATA:
        student.metadata.pop(key, None)
    return student, removed


def _files(source: Path) -> list[Path]:
    """The lessons' files under ``source``, relative to it; hidden ones, caches and
    what the lessons' cells write (:data:`~energy_flows.lessons.WRITTEN_BY_LESSONS`) aside."""
    found = []
    for path in sorted(source.rglob("*")):
        relative = path.relative_to(source)
        if any(
            part.startswith(".") or part in _SKIPPED_FOLDERS or part in WRITTEN_BY_LESSONS
            for part in relative.parts
        ):
            continue
        if path.is_file():
            found.append(relative)
    return found


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _read_record(folder: Path) -> dict[str, str] | None:
    """The files a previous edition wrote into ``folder`` (name -> sha256), or None."""
    try:
        record = json.loads((folder / RECORD_NAME).read_text())
        files = record["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(files, dict):
        return None
    return {str(name): str(digest) for name, digest in files.items()}


def _changed_since(folder: Path, record: dict[str, str]) -> list[str]:
    """The files of the previous edition that someone changed after it was written."""
    changed = []
    for name, digest in record.items():
        path = folder / name
        if path.is_file() and _digest(path.read_bytes()) != digest:
            changed.append(name)
    return changed


def _check_folder(folder: Path, source: Path, force: bool) -> dict[str, str]:
    """Refuse a folder the edition must not write into; return the previous edition's record."""
    if folder == source or source in folder.parents:
        raise EnergyFlowsError(
            f"{folder} is in the folder of the original lessons ({source}); "
            "choose a folder outside it."
        )
    if folder.exists() and not folder.is_dir():
        raise EnergyFlowsError(f"{folder} is a file, not a folder; choose another folder.")
    if not folder.exists() or not any(folder.iterdir()):
        return {}
    record = _read_record(folder)
    if record is None:
        if not force:
            raise EnergyFlowsError(
                f"{folder} is not empty and is not a student edition made by this command. "
                "Choose another folder, or pass --force to write into it anyway "
                "(files with the lessons' names are replaced; nothing else is touched)."
            )
        return {}
    changed = _changed_since(folder, record)
    if changed and not force:
        raise EnergyFlowsError(
            f"{', '.join(changed)} in {folder} changed since the last student edition was "
            "written. Pass --force to replace them with the new edition, or choose another folder."
        )
    return record


def _write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` whole: a reader never sees half a lesson."""
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(f".{path.name}.writing")
    scratch.write_bytes(data)
    os.replace(scratch, path)


def build_student_edition(source: Path) -> tuple[dict[str, bytes], dict[str, int]]:
    """The files of the student edition of the lessons in ``source``, in memory.

    Returns ``(files, removed)``: each file's path relative to ``source`` and
    its bytes (lessons stripped by :func:`strip_solutions`, other files as they
    are), and for each lesson how many solution cells it lost. Every lesson is
    checked as a valid nbformat 4 notebook before anything is written.
    """
    import nbformat

    if not source.is_dir():
        raise EnergyFlowsError(
            f"The lessons are not where they should be ({source}). Run this from the top "
            "of the energy-flows repository."
        )
    files: dict[str, bytes] = {}
    removed: dict[str, int] = {}
    for relative in _files(source):
        name = relative.as_posix()
        if relative.suffix == ".ipynb":
            try:
                notebook = nbformat.read(source / relative, as_version=4)
                student, count = strip_solutions(notebook)
                nbformat.validate(student)
            except (ValueError, nbformat.ValidationError) as exc:
                raise EnergyFlowsError(
                    f"{source / relative} is not a valid notebook: {exc}"
                ) from exc
            text = nbformat.writes(student, version=4)
            files[name] = (text if text.endswith("\n") else text + "\n").encode()
            removed[name] = count
        else:
            files[name] = (source / relative).read_bytes()
    if not removed:
        raise EnergyFlowsError(f"There are no lessons (.ipynb files) in {source}.")
    return files, removed


def write_student_edition(
    folder: str | os.PathLike[str],
    source: Path | None = None,
    *,
    force: bool = False,
    say: Callable[[str], object] | None = print,
) -> Edition:
    """Write the student edition of the lessons into ``folder``; return what was written.

    ``source`` is the lessons' folder (default: where ``energy-flows lab``
    finds them). ``folder`` may be new, empty, or a previous student edition
    (recognised by its ``.energy-flows-student.json``); anything else is
    refused unless ``force`` (see the module's description for what is
    replaced and what never is). ``say`` reports what was written.
    """
    from energy_flows.lab import lessons_dir

    source = (source or lessons_dir()).resolve()
    target = Path(folder).expanduser().resolve()
    files, removed = build_student_edition(source)
    previous = _check_folder(target, source, force)

    target.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        _write(target / name, data)
    edition = Edition(
        target, lessons=dict(removed), companions=[name for name in files if name not in removed]
    )
    # A lesson the previous edition wrote that is no lesson now (renamed, removed)
    # goes too, if nobody changed it since; a changed one stays.
    for name, digest in previous.items():
        path = target / name
        if name in files or not path.is_file():
            continue
        if _digest(path.read_bytes()) == digest:
            path.unlink()
            edition.removed_stale.append(name)
        else:
            edition.kept_changed.append(name)
    record = {
        "written_by": "energy-flows student",
        "files": {name: _digest(data) for name, data in files.items()},
    }
    _write(target / RECORD_NAME, (json.dumps(record, indent=2) + "\n").encode())
    if say is not None:
        for line in edition.summary():
            say(line)
    return edition


def run_student(args: argparse.Namespace) -> int:
    """``energy-flows student DIR [--force]``: write the student edition into ``DIR``."""
    write_student_edition(args.folder, force=args.force)
    return 0
