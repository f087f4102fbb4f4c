"""Several labelled sources read as one training set: the class folders a model was trained on and
the CSV that ``wukong suggest`` wrote and a person then labelled, for example.

``wukong train DATA MORE ...`` and ``fit(Sources(DATA, MORE))`` read each source as they would read
it alone (a class-per-folder tree or an archive of one, an image CSV, a text table), then join them:
the classes are those of all of them together (one source may hold only some classes, as a file of
suggestions often does), rows left unlabelled are skipped as they are in one file, and an image that
two sources list is used once; under two different labels it is an error naming both sources.

Example:
    >>> Sources("cat_dog/train", "to_label.csv")
    Sources('cat_dog/train', 'to_label.csv')
    >>> Sources("cat_dog/train", "to_label.csv").origin
    'cat_dog/train + to_label.csv'
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


class Sources:
    """Labelled files or folders of one modality, trained on as one set (see the module's docstring)."""

    def __init__(self, *paths: str | Path) -> None:
        if not paths:
            raise ValueError("Sources needs at least one labelled file or folder")
        self.paths = tuple(Path(p) for p in paths)

    @property
    def origin(self) -> str:
        """How messages name the joined set: the sources, joined by ``+``."""
        return " + ".join(str(p) for p in self.paths)

    def modality(self) -> str:
        """``"image"`` or ``"text"``: every source's, or ``DataError`` naming two that differ."""
        from wukong.data.inputs import modality_of
        from wukong.errors import DataError

        kinds = [(path, modality_of(path)) for path in self.paths]
        for path, kind in kinds[1:]:
            if kind != kinds[0][1]:
                raise DataError(
                    f"{path}: {kind} data, but {kinds[0][0]} holds {kinds[0][1]} data; join sources of one kind"
                )
        return kinds[0][1]

    def __repr__(self) -> str:
        return f"Sources({', '.join(repr(str(p)) for p in self.paths)})"


def one_set(paths: Sequence[Path]) -> Path | Sources:
    """What the commands' DATA arguments name: one path as it is (read, and named in messages, as
    before several were possible), several as ``Sources``."""
    return paths[0] if len(paths) == 1 else Sources(*paths)


def optional_set(paths: Sequence[Path] | None) -> Path | Sources | None:
    """``one_set`` of an option's paths (``--val``, ``--test``), or ``None`` where none was given."""
    return one_set(paths) if paths else None


def record_of(data: Path | Sources) -> str | list[str]:
    """How ``metrics.json`` names a labelled set (``test_data``): its absolute path, or the list of
    them for several sources.

    Example:
        >>> record_of(Sources("/data/test", "/data/more.csv"))
        ['/data/test', '/data/more.csv']
    """
    paths = [str(Path(p).resolve()) for p in (data.paths if isinstance(data, Sources) else [data])]
    return paths[0] if len(paths) == 1 else paths


def set_of_record(record: str | list[str] | None) -> Path | Sources | None:
    """The set a record (``record_of``) names, where every path of it is still there; else ``None``."""
    paths = [Path(p) for p in ([record] if isinstance(record, str) else record or [])]
    return optional_set(paths) if all(p.exists() for p in paths) else None
