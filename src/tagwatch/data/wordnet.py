"""WordNet 3.0 from Debian's ``wordnet-base`` files, read with nltk, with no download.

nltk only reads a corpus laid out as ``<root>/corpora/wordnet/`` and needs a ``lexnames`` file that Debian does
not ship, so :func:`prepare_wordnet_dir` copies ``/usr/share/wordnet/{data.*,index.*,*.exc}`` into a cache dir
(``$XDG_CACHE_HOME/tagwatch/nltk_data`` by default) and writes the standard 45-line ``lexnames`` there. The
reader is built directly on that dir; the dir is appended to ``nltk.data.path`` because nltk's path guard
refuses any other location.
"""

from __future__ import annotations

import functools
import os
import shutil
from pathlib import Path
from typing import Any

from tagwatch.errors import ConfigError

DEBIAN_WORDNET_DIR = Path("/usr/share/wordnet")

# The WordNet 3.0 lexicographer files, in order (lexnames: number, name, syntactic category).
_LEXNAMES = [
    ("adj.all", 3), ("adj.pert", 3), ("adv.all", 4), ("noun.Tops", 1), ("noun.act", 1), ("noun.animal", 1),
    ("noun.artifact", 1), ("noun.attribute", 1), ("noun.body", 1), ("noun.cognition", 1),
    ("noun.communication", 1), ("noun.event", 1), ("noun.feeling", 1), ("noun.food", 1), ("noun.group", 1),
    ("noun.location", 1), ("noun.motive", 1), ("noun.object", 1), ("noun.person", 1), ("noun.phenomenon", 1),
    ("noun.plant", 1), ("noun.possession", 1), ("noun.process", 1), ("noun.quantity", 1), ("noun.relation", 1),
    ("noun.shape", 1), ("noun.state", 1), ("noun.substance", 1), ("noun.time", 1), ("verb.body", 2),
    ("verb.change", 2), ("verb.cognition", 2), ("verb.communication", 2), ("verb.competition", 2),
    ("verb.consumption", 2), ("verb.contact", 2), ("verb.creation", 2), ("verb.emotion", 2), ("verb.motion", 2),
    ("verb.perception", 2), ("verb.possession", 2), ("verb.social", 2), ("verb.stative", 2), ("verb.weather", 2),
    ("adj.ppl", 3),
]


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base) / "tagwatch" / "nltk_data"


def lexnames_text() -> str:
    return "".join(f"{number:02d}\t{name}\t{category}\n" for number, (name, category) in enumerate(_LEXNAMES))


def prepare_wordnet_dir(*, cache_dir: Path | None = None, source_dir: Path = DEBIAN_WORDNET_DIR) -> Path:
    """Copy Debian's WordNet files into ``<cache_dir>/corpora/wordnet`` once; return that corpus dir."""
    target = (cache_dir or default_cache_dir()) / "corpora" / "wordnet"
    marker = target / ".tagwatch-complete"
    if marker.is_file():
        return target
    if not (source_dir / "data.noun").is_file():
        raise ConfigError(
            f"WordNet 3.0 files not found in {source_dir}",
            hint="install them: apt-get install wordnet-base wordnet-sense-index",
        )
    target.mkdir(parents=True, exist_ok=True)
    for path in sorted(source_dir.iterdir()):
        if path.name.startswith(("data.", "index.")) or path.suffix == ".exc":
            shutil.copyfile(path, target / path.name)
    (target / "lexnames").write_text(lexnames_text())
    marker.write_text("copied from " + str(source_dir) + "\n")
    return target


@functools.lru_cache(maxsize=4)
def load_wordnet(cache_dir: Path | None = None) -> Any:
    """An nltk ``WordNetCorpusReader`` over the prepared dir (cached per process; loading takes ~2 s)."""
    import nltk
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    root = prepare_wordnet_dir(cache_dir=cache_dir)
    # nltk refuses to read corpora outside its data path (nltk.pathsec), so the cache dir joins that list.
    data_dir = str(root.parent.parent)
    if data_dir not in nltk.data.path:
        nltk.data.path.append(data_dir)
    import warnings

    with warnings.catch_warnings():  # "multilingual functions are not available": we do not use them
        warnings.simplefilter("ignore", UserWarning)
        return WordNetCorpusReader(str(root), None)
