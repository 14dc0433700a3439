"""platform.stores: where backups are kept. The directory store on a real filesystem; the S3
store's addressing and error lines (the S3 behaviour itself is tested against a real server in
test_s3_backups.py)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from redkube.model.backups import BackupError
from redkube.platform.stores import DirectoryStore, S3Settings, S3Store, open_store


def test_a_directory_store_keeps_whole_files_for_their_owner_only(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "backup"))
    assert isinstance(store, DirectoryStore)
    store.check()
    assert store.size("shard-0.rdb") is None and store.read_text("manifest.json") is None
    local = tmp_path / "local.rdb"
    local.write_bytes(b"REDIS0011" + bytes(range(256)) * 10)
    store.put("shard-0.rdb", local)
    store.write_text("manifest.json", "{}\n")
    kept = tmp_path / "backup" / "shard-0.rdb"
    assert kept.read_bytes() == local.read_bytes()
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "backup").stat().st_mode) == 0o700
    assert store.size("shard-0.rdb") == local.stat().st_size
    assert store.read_text("manifest.json") == "{}\n"
    assert not list((tmp_path / "backup").glob(".*"))  # no partial file left
    fetched = tmp_path / "fetched.rdb"
    store.fetch("shard-0.rdb", fetched)
    assert fetched.read_bytes() == local.read_bytes()


def test_a_full_volume_is_one_line_and_leaves_no_partial_file(tmp_path: Path) -> None:
    """The kernel's own "no space left": the partial file is /dev/full (a symlink to it)."""
    store = DirectoryStore(tmp_path / "backup")
    (tmp_path / "backup").mkdir()
    local = tmp_path / "local.rdb"
    local.write_bytes(b"REDIS0011" + bytes(1 << 16))
    for name, write in (
        ("shard-0.rdb", lambda: store.put("shard-0.rdb", local)),
        ("manifest.json", lambda: store.write_text("manifest.json", "{}\n" * 5000)),
    ):
        (tmp_path / "backup" / f".{name}.partial").symlink_to("/dev/full")
        with pytest.raises(BackupError) as raised:
            write()
        assert str(raised.value) == (
            f"cannot write {name} to {tmp_path / 'backup'}: No space left on device"
        )
        assert store.names() == [] and not list((tmp_path / "backup").glob(".*"))


def test_removed_objects_are_gone_and_names_list_what_is_kept(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path / "backup")
    assert store.names() == []
    store.write_text("manifest.json", "{}")
    store.write_text("shard-0.rdb", "x")
    assert store.names() == ["manifest.json", "shard-0.rdb"]
    store.remove("manifest.json")
    store.remove("manifest.json")  # gone already: nothing
    assert store.names() == ["shard-0.rdb"]


def test_a_file_is_no_directory_store(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(BackupError, match="is not a directory"):
        open_store(str(tmp_path / "file")).check()


def test_s3_locations_name_a_bucket_and_a_prefix() -> None:
    store = open_store("s3://backups/shop/2026-12-01/")
    assert isinstance(store, S3Store)
    assert (store.bucket, store.prefix, store.location) == (
        "backups", "shop/2026-12-01", "s3://backups/shop/2026-12-01"
    )  # fmt: skip
    assert open_store("s3://backups").location == "s3://backups"
    with pytest.raises(BackupError, match="name a bucket"):
        open_store("s3:///prefix")


@pytest.mark.parametrize(
    ("code", "said"),
    [
        ("SignatureDoesNotMatch", "the secret key is wrong"),
        ("InvalidAccessKeyId", "the access key is not known to the server"),
        ("403", "access denied (wrong credentials?)"),
        ("SlowDown", "SlowDown: please reduce your request rate"),
    ],
)
def test_s3_errors_are_one_line_naming_the_location(code: str, said: str) -> None:
    store = S3Store("backups", "shop", S3Settings())
    error = ClientError(
        {"Error": {"Code": code, "Message": "please reduce your request rate"}}, "PutObject"
    )
    message = str(store._failed("cannot write manifest.json to", error))
    assert message == f"cannot write manifest.json to s3://backups/shop: {said}"
    assert "\n" not in message
