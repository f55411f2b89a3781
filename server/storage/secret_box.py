"""Encryption at rest for target secrets: Fernet (AES-128-CBC + HMAC-SHA256, from `cryptography`).

TARGET_SECRETS_KEY holds one or more comma-separated Fernet keys: the first encrypts, all decrypt,
so a key can be rotated by putting the new one first. Without it, a key is generated once into
TARGET_SECRETS_KEY_FILE (default var/target_secrets.key, mode 0600), which is what `make run` on a
fresh machine uses; replicas on several machines must share TARGET_SECRETS_KEY instead.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from server.domain.errors import FailedPrecondition


class FernetSecretBox:
    """Implements server.domain.targets.SecretCipher."""

    def __init__(self, keys: list[str]) -> None:
        if not keys:
            raise ValueError("at least one key is needed")
        self._fernet = MultiFernet([Fernet(k.encode()) for k in keys])

    def encrypt(self, plaintext: bytes) -> str:
        return self._fernet.encrypt(plaintext).decode()

    def decrypt(self, ciphertext: str) -> bytes:
        try:
            return self._fernet.decrypt(ciphertext.encode())
        except InvalidToken:
            # The message names no secret; the operator knows which setting holds the key.
            raise FailedPrecondition(
                "the stored target secrets cannot be decrypted with TARGET_SECRETS_KEY; "
                "configure the target again or restore the key",
                reason="TARGET_SECRETS_UNREADABLE",
            ) from None


def load_keys(configured: str, key_file: Path) -> list[str]:
    """The configured keys, else the key file's (created on first use; safe when several worker
    processes start together: O_EXCL lets one write it and the others read it)."""
    keys = [k.strip() for k in configured.split(",") if k.strip()]
    if keys:
        for key in keys:
            Fernet(key.encode())  # fail at start-up, not at the first dispatch
        return keys
    key_file.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as out:
            out.write(Fernet.generate_key().decode() + "\n")
    for _ in range(200):  # another process may be between creating and writing the file
        content = key_file.read_text().strip()
        if content:
            return [content]
        time.sleep(0.01)
    raise RuntimeError(f"{key_file} is empty; delete it or set TARGET_SECRETS_KEY")
