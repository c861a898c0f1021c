"""The data registry: which shared file serves which role, its sha256, and how to read it.

Nothing is downloaded: every file comes from the shared data folder (``../shared/data``), is
checked against the sha256 recorded here and copied into ``resources/data/{dataset}/``.
The roles follow ``shared/data/SOURCES.md``; where a paper's corpus is not available offline
the substitute is named in ``CORPORA`` and recorded with every result.
"""
from __future__ import annotations

import bz2
import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..io import atomic_dir

__all__ = ["DATASETS", "CORPORA", "PERPLEXITY", "DataError", "sha256_file", "verify_dataset", "install_dataset",
           "perplexity_text", "corpus_documents", "alpaca_examples"]


class DataError(RuntimeError):
    """A data file is missing, corrupt or unknown."""


@dataclass(frozen=True)
class Dataset:
    files: dict[str, str]  # path inside the dataset folder -> sha256
    role: str


DATASETS: dict[str, Dataset] = {
    "wikitext2": Dataset({"wiki.test.raw": "173c87a53759e0201f33e0ccf978e510c2042d7f2cb78229d9a50d79b9e7dd08"},
                         "perplexity"),
    "ptb": Dataset({"ptb.test.txt": "dd65dff31e70846b2a6030a87482edcd5d199130cdcfa1f3dccbb033728deee0",
                    "ptb.valid.txt": "c9fe6985fe0d4ccb578183407d7668fc6066c20700cb4cf87d8ff1cc34df1bf2"},
                   "perplexity"),
    "boolq": Dataset({"dev.jsonl": "ebc29ea3808c5c611672384b3de56e83349fe38fc1fe876fd29b674d81d0a80a"},
                     "zero-shot"),
    "piqa": Dataset({"valid.jsonl": "93503cc97c679e459b065c3d13e848282e44b2a25213985bed3e5d458abef72d",
                     "valid-labels.lst": "b4192dc3a2a0363d9d60ccf79800cbbe2f32ebb17726efdde6970e0b8131bceb"},
                    "zero-shot"),
    "hellaswag": Dataset({"hellaswag_val_full.txt.bz2":
                          "50b637899e4263c2bc456c2dc726c95d2c8cd8e2a552ea5bd7719ce3cb03fe5b"}, "zero-shot"),
    "winogrande": Dataset({"dev.jsonl": "1aeac79cf46a3dcbe59a71ca7e5372a1490cde2b4ae2387dc56f00378104d2e8"},
                          "zero-shot"),
    "arc_easy": Dataset({"ARC-Easy-Test.jsonl": "ce32a0774b4beb1977d2c6b16dda5dd2b24fdc9c7f506882c452678676bd09be"},
                        "zero-shot"),
    "arc_challenge": Dataset({"ARC-Challenge-Test.jsonl":
                              "9fa8ffb3e3a1f88cb302d53dd95aae81e39209ad9bcf974376b319d8fd35717c"}, "zero-shot"),
    "openbookqa": Dataset({"test.jsonl": "feb2bd9bfa6161dca4c44ce90e51e8cdada83eb5061407fcdc5005e44aaf2313"},
                          "zero-shot"),
    "c4": Dataset({"c4_en_train_sample_1000.jsonl":
                   "cdd5b754119131d2934e3e799a059a9d64f53a6aac9e7e2ef79b43120bb01a32"}, "calibration"),
    "bookcorpus": Dataset({"bookcorpus_sentences_10000.txt":
                           "f7a700808454412c8dcaf3edd0e9a83bbdb12b60e27ca6e1bb525612e57ad961"}, "calibration"),
    "alpaca": Dataset({"alpaca_small.json": "da78d2d54637d8b7e210d1db495da09c0de3ac21067aefafef5da58586b45ce3"},
                      "recovery"),
}


@dataclass(frozen=True)
class Corpus:
    dataset: str
    file: str
    layout: str  # "documents": one text per json line; "sentences": one sentence per line
    description: str


# Calibration corpora that exist offline. A method's config names one and, where the paper used
# another, says which (`substitutes`): that substitution is recorded with every result.
CORPORA: dict[str, Corpus] = {
    "c4": Corpus("c4", "c4_en_train_sample_1000.jsonl", "documents",
                 "C4-en train, first 1000 documents of shard 00000"),
    "bookcorpus": Corpus("bookcorpus", "bookcorpus_sentences_10000.txt", "sentences",
                         "BookCorpus, 10000 consecutive sentences"),
}

# Perplexity sets: dataset, file, and how the papers' code joins the split into one text. "ptb" is
# the validation split: both references load `ptb_text_only` with split='validation' and report it
# as "PTB" (LLM-Pruner ppl_dataset.py, FLAP lib/data.py); the test split is the set "ptb_test".
PERPLEXITY: dict[str, tuple[str, str, str]] = {
    "wikitext2": ("wikitext2", "wiki.test.raw", "WikiText-2 raw test, HF rows joined with \\n\\n"),
    "ptb": ("ptb", "ptb.valid.txt", "PTB validation (the split both references report as PTB), stripped sentences "
            "joined with \\n\\n"),
    "ptb_test": ("ptb", "ptb.test.txt", "PTB test, stripped sentences joined with \\n\\n"),
}


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _check_name(name: str, registry: dict, what: str) -> None:
    if name not in registry:
        raise DataError(f"unknown {what} {name!r}; allowed: {', '.join(sorted(registry))}")


def verify_dataset(name: str, source_root: str | os.PathLike) -> None:
    """Every file of dataset `name` exists under `source_root/name/` with its recorded sha256."""
    _check_name(name, DATASETS, "dataset")
    if not Path(source_root).is_dir():
        raise DataError(f"data folder {source_root} does not exist (expected the shared data, see SOURCES.md)")
    for file, expected in DATASETS[name].files.items():
        path = Path(source_root) / name / file
        if not path.is_file():
            raise DataError(f"missing data file {path} (dataset {name!r}); see shared/data/SOURCES.md")
        actual = sha256_file(path)
        if actual != expected:
            raise DataError(f"corrupt data file {path}: sha256 {actual} != expected {expected}")


def install_dataset(name: str, source_root: str | os.PathLike, dest: str | os.PathLike) -> dict[str, str]:
    """Verify every file of `name` under `source_root/name/` and copy it into `dest`.

    Returns {file: sha256}. `dest` appears only when every file is verified (copy to a temporary
    folder, then rename), so a failed or killed run never leaves a half-verified dataset behind.
    """
    verify_dataset(name, source_root)
    src = Path(source_root) / name
    with atomic_dir(dest) as tmp:
        for file in DATASETS[name].files:
            shutil.copyfile(src / file, tmp / file)
        _PREPARE.get(name, lambda d: None)(tmp)
    return dict(DATASETS[name].files)


# --- derived layouts for lm-eval ------------------------------------------------------------

def _write_jsonl(path: Path, rows: list[dict]) -> None:
    with open(path, "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


def _prepare_piqa(folder: Path) -> None:
    """PIQA ships labels in a separate file: join them into one jsonl for the task YAML."""
    docs = [json.loads(line) for line in open(folder / "valid.jsonl")]
    labels = [int(line) for line in open(folder / "valid-labels.lst").read().split()]
    if len(docs) != len(labels):
        raise DataError(f"piqa: {len(docs)} questions but {len(labels)} labels")
    _write_jsonl(folder / "piqa.jsonl", [dict(doc, label=label) for doc, label in zip(docs, labels)])


def _prepare_hellaswag(folder: Path) -> None:
    """Parse the six-lines-per-example text layout (context, gold, four endings).

    The context line is already cleaned as lm-eval's `preprocess` does; it differs from
    lm-eval's own documents only in that `ctx_b` was not capitalised (see SOURCES.md).
    """
    lines = bz2.open(folder / "hellaswag_val_full.txt.bz2", "rt").read().split("\n")
    lines = lines[:-1] if lines and lines[-1] == "" else lines
    if len(lines) % 6:
        raise DataError(f"hellaswag: {len(lines)} lines is not a multiple of 6")
    rows = [{"query": lines[i], "label": int(lines[i + 1]), "choices": lines[i + 2:i + 6]}
            for i in range(0, len(lines), 6)]
    _write_jsonl(folder / "hellaswag.jsonl", rows)


_PREPARE = {"piqa": _prepare_piqa, "hellaswag": _prepare_hellaswag}


# --- readers --------------------------------------------------------------------------------

def perplexity_text(name: str, data_root: str | os.PathLike) -> str:
    """The evaluation text exactly as the seeds' ppl code builds it before tokenizing."""
    _check_name(name, PERPLEXITY, "perplexity dataset")
    dataset, file, _ = PERPLEXITY[name]
    raw = (Path(data_root) / dataset / file).read_text(encoding="utf-8")
    if dataset == "wikitext2":
        # HF `wikitext-2-raw-v1` rows: each raw line plus "\n", blank lines as "" (SOURCES.md §1).
        rows = [line + "\n" if line.strip() else "" for line in raw.split("\n")[:-1]]
    else:
        # HF `ptb_text_only` rows are the sentences with surrounding whitespace stripped.
        rows = [line.strip() for line in raw.split("\n") if line.strip()]
    return "\n\n".join(rows)


def corpus_documents(name: str, data_root: str | os.PathLike) -> list[str]:
    _check_name(name, CORPORA, "calibration corpus")
    corpus = CORPORA[name]
    path = Path(data_root) / corpus.dataset / corpus.file
    if corpus.layout == "documents":
        return [json.loads(line)["text"] for line in open(path, encoding="utf-8")]
    return [line.strip() for line in open(path, encoding="utf-8") if line.strip()]


def alpaca_examples(data_root: str | os.PathLike) -> list[dict[str, str]]:
    return json.loads((Path(data_root) / "alpaca" / "alpaca_small.json").read_text(encoding="utf-8"))
