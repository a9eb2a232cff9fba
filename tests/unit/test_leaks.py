"""The leak scanner itself must find a key where one is planted."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.leaks import find_in_bytes, find_in_tree, key_needles, raw_needles
from tests.support.realparts import make_key


def test_scanner_finds_planted_key_in_any_form(tmp_path: Path) -> None:
    """A key copied as PEM, inside JSON, or re-wrapped on one line is found in a tree."""
    key = make_key(tmp_path / "keys", "planted")
    needles = key_needles(key.private_bytes)
    tree = tmp_path / "tree"
    (tree / "a" / "b").mkdir(parents=True)
    (tree / "clean.txt").write_text("nothing to see\n")
    assert find_in_tree(tree, needles) == []

    (tree / "a" / "id_rsa").write_bytes(key.private_bytes)
    (tree / "a" / "b" / "config.json").write_text(json.dumps({"arg": key.private_bytes.decode()}))
    joined = b"".join(key.private_bytes.splitlines()[1:-1])
    (tree / "a" / "b" / "layer.bin").write_bytes(b"\x00\x01" + joined + b"\xff")
    assert sorted(find_in_tree(tree, needles)) == sorted(
        str(tree / p) for p in ("a/id_rsa", "a/b/config.json", "a/b/layer.bin")
    )


def test_scanner_ignores_other_keys(tmp_path: Path) -> None:
    """Another key of the same type shares no needle with ours (no false alarms)."""
    ours, theirs = make_key(tmp_path, "ours"), make_key(tmp_path, "theirs")
    needles = key_needles(ours.private_bytes) + raw_needles(ours.private_bytes)
    assert find_in_bytes(theirs.private_bytes, needles) == []
    assert find_in_bytes(ours.private_bytes, needles) != []


def test_encrypted_key_needles_cover_the_decrypted_form(tmp_path: Path) -> None:
    """For an encrypted key, the decrypted form handed to ssh-add is found too."""
    from cryptography.hazmat.primitives import serialization

    key = make_key(tmp_path / "keys", "enc", passphrase="pw")
    decrypted = serialization.load_ssh_private_key(key.private_bytes, b"pw").private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "dump").write_bytes(decrypted)
    assert find_in_tree(tree, key_needles(key.private_bytes, "pw")) == [str(tree / "dump")]
